# Turns a file into a C source defining `const char NAME[]` and `NAME_len`.
file(READ ${IN} content HEX)
string(LENGTH "${content}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
file(WRITE ${OUT} "/* Generated from ${IN}; do not edit. */\n#include <stddef.h>\n")
file(APPEND ${OUT} "const char ${NAME}[] = {${bytes} 0x00};\nconst size_t ${NAME}_len = ${len};\n")
