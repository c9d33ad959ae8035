/* The engine's internal code: what the load-time compiler (compile.c) makes
 * of each validated function body and what the interpreter (exec.c) runs.
 *
 * A compiled function is an array of 64-bit cells. The first cell of each
 * instruction holds the address of its handler inside the interpreter
 * (direct threading with computed goto); the cells after it hold decoded
 * immediates: absolute branch targets, stack heights, offsets, constants.
 * Every value lives in one 64-bit slot (i32/f32 zero-extended, floats as
 * bits, funcref as a wasm_func pointer, externref as host value + 1 so that
 * null is 0 for both reference types).
 *
 * Slots are counted from the frame pointer: slot 0 is the first parameter,
 * then the declared locals, then the operand stack. Because a valid
 * module's operand height is known at every instruction, the interpreter
 * keeps no stack pointer: each instruction names the slots it reads and
 * writes. That lets the compiler read operands straight from locals and
 * constants (local.get and i32.const emit nothing), write results straight
 * into locals (an add followed by local.set is one instruction) and fuse a
 * comparison with the br_if that tests it.
 *
 * Fuel: the compiler starts a basic block at the function entry, at every
 * loop header, at every label a branch can reach (after end, at else, after
 * if and br_if) and emits a FUEL instruction there charging the number of
 * wasm instructions of the block. Loops therefore pay on every back-edge and
 * calls pay at the callee's entry. */
#ifndef CAXTON_WASM_COMPILE_H
#define CAXTON_WASM_COMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "wasm/module.h"

/* Internal instructions other than the numeric ones. Immediates in [];
 * a, b, dst, cond, src and top are slot numbers from the frame pointer
 * ("top" is the operand height in slots, where the instruction's operands
 * end); "target" is a cell pointer; x|y are two 32-bit halves of one cell. */
#define WASM_CONTROL_OPS(X)                                                                     \
    X(UNREACHABLE)        /* */                                                                 \
    X(FUEL)               /* [cost] */                                                          \
    X(JUMP)               /* [target] */                                                        \
    X(BR_DROP)            /* [target, keep|dst, src]: moves keep slots src.. to dst.. */        \
    X(BR_IF)              /* [cond, target] */                                                  \
    X(BR_IF_DROP)         /* [cond, target, keep|dst, src] */                                   \
    X(BR_UNLESS)          /* [cond, target]: if's condition false */                            \
    X(BR_TABLE)           /* [count, top, count+1 x (target, keep|dst)]: index at top */        \
    X(RETURN)             /* [arity|src] */                                                     \
    X(CALL)               /* [wasm_code_func *, base]: arguments at base.. */                   \
    X(CALL_IMPORT)        /* [function index, base] */                                          \
    X(CALL_INDIRECT)      /* [type index | table index, base|index] */                          \
    X(COPY)               /* [src|dst]: local.get/set/tee */                                    \
    X(CONST)              /* [dst, value] */                                                    \
    X(SELECT)             /* [a|b, cond|dst] */                                                 \
    X(GLOBAL_GET)         /* [index|dst] */                                                     \
    X(GLOBAL_SET)         /* [index|src] */                                                     \
    X(TABLE_GET)          /* [top, table] */                                                    \
    X(TABLE_SET)          /* [top, table] */                                                    \
    X(TABLE_SIZE)         /* [top, table] */                                                    \
    X(TABLE_GROW)         /* [top, table] */                                                    \
    X(TABLE_FILL)         /* [top, table] */                                                    \
    X(TABLE_COPY)         /* [top, dst table | src table] */                                    \
    X(TABLE_INIT)         /* [top, elem | table] */                                             \
    X(ELEM_DROP)          /* [elem] */                                                          \
    X(LOAD32)             /* [addr|dst, offset|add]: i32.load, f32.load, i64.load32_u */        \
    X(LOAD64)             /* [addr|dst, offset|add] */                                          \
    X(LOAD8_S32)          /* [addr|dst, offset|add] */                                          \
    X(LOAD8_U)            /* [addr|dst, offset|add] */                                          \
    X(LOAD16_S32)         /* [addr|dst, offset|add] */                                          \
    X(LOAD16_U)           /* [addr|dst, offset|add] */                                          \
    X(LOAD8_S64)          /* [addr|dst, offset|add] */                                          \
    X(LOAD16_S64)         /* [addr|dst, offset|add] */                                          \
    X(LOAD32_S64)         /* [addr|dst, offset|add] */                                          \
    X(STORE8)             /* [addr|value, offset|add] */                                        \
    X(STORE16)            /* [addr|value, offset|add] */                                        \
    X(STORE32)            /* [addr|value, offset|add] */                                        \
    X(STORE64)            /* [addr|value, offset|add] */                                        \
    X(MEMORY_SIZE)        /* [top] */                                                           \
    X(MEMORY_GROW)        /* [top] */                                                           \
    X(MEMORY_INIT)        /* [top, data] */                                                     \
    X(DATA_DROP)          /* [data] */                                                          \
    X(MEMORY_COPY)        /* [top] */                                                           \
    X(MEMORY_FILL)        /* [top] */                                                           \
    X(REF_IS_NULL)        /* [a|dst] */                                                         \
    X(REF_FUNC)           /* [function index|dst] */                                            \
    X(I32_TRUNC_SAT_F32_S) X(I32_TRUNC_SAT_F32_U) X(I32_TRUNC_SAT_F64_S)                        \
    X(I32_TRUNC_SAT_F64_U) X(I64_TRUNC_SAT_F32_S) X(I64_TRUNC_SAT_F32_U)                        \
    X(I64_TRUNC_SAT_F64_S) X(I64_TRUNC_SAT_F64_U) /* [a|dst] */

/* i32 comparisons fused with the br_if or if that consumes them:
 * BR_IF_NAME [a|b, target] jumps when the comparison holds, BR_UNLESS_NAME
 * when it does not; the _I forms take b as a constant. */
#define WASM_FUSED_COMPARES(X)                                                                  \
    X(I32_EQZ) X(I32_EQ) X(I32_NE) X(I32_LT_S) X(I32_LT_U) X(I32_GT_S) X(I32_GT_U)              \
    X(I32_LE_S) X(I32_LE_U) X(I32_GE_S) X(I32_GE_U)

/* The numeric instructions 0x45..0xc4, in opcode order, so that the
 * internal opcode is WASM_OP_NUMERIC + (opcode - 0x45); U unary, B binary.
 * Unary: [a|dst]. Binary: [a|b, dst]; each binary one also has an
 * immediate form NAME_I whose second operand is a constant: [a|dst, b]. */
#define WASM_NUMERIC_OPS(U, B)                                                                  \
    U(I32_EQZ) B(I32_EQ) B(I32_NE) B(I32_LT_S) B(I32_LT_U) B(I32_GT_S) B(I32_GT_U)          \
    B(I32_LE_S) B(I32_LE_U) B(I32_GE_S) B(I32_GE_U) U(I64_EQZ) B(I64_EQ) B(I64_NE)          \
    B(I64_LT_S) B(I64_LT_U) B(I64_GT_S) B(I64_GT_U) B(I64_LE_S) B(I64_LE_U) B(I64_GE_S)     \
    B(I64_GE_U) B(F32_EQ) B(F32_NE) B(F32_LT) B(F32_GT) B(F32_LE) B(F32_GE) B(F64_EQ)       \
    B(F64_NE) B(F64_LT) B(F64_GT) B(F64_LE) B(F64_GE) U(I32_CLZ) U(I32_CTZ) U(I32_POPCNT)   \
    B(I32_ADD) B(I32_SUB) B(I32_MUL) B(I32_DIV_S) B(I32_DIV_U) B(I32_REM_S) B(I32_REM_U)    \
    B(I32_AND) B(I32_OR) B(I32_XOR) B(I32_SHL) B(I32_SHR_S) B(I32_SHR_U) B(I32_ROTL)        \
    B(I32_ROTR) U(I64_CLZ) U(I64_CTZ) U(I64_POPCNT) B(I64_ADD) B(I64_SUB) B(I64_MUL)        \
    B(I64_DIV_S) B(I64_DIV_U) B(I64_REM_S) B(I64_REM_U) B(I64_AND) B(I64_OR) B(I64_XOR)     \
    B(I64_SHL) B(I64_SHR_S) B(I64_SHR_U) B(I64_ROTL) B(I64_ROTR) U(F32_ABS) U(F32_NEG)      \
    U(F32_CEIL) U(F32_FLOOR) U(F32_TRUNC) U(F32_NEAREST) U(F32_SQRT) B(F32_ADD) B(F32_SUB)  \
    B(F32_MUL) B(F32_DIV) B(F32_MIN) B(F32_MAX) B(F32_COPYSIGN) U(F64_ABS) U(F64_NEG)       \
    U(F64_CEIL) U(F64_FLOOR) U(F64_TRUNC) U(F64_NEAREST) U(F64_SQRT) B(F64_ADD) B(F64_SUB)  \
    B(F64_MUL) B(F64_DIV) B(F64_MIN) B(F64_MAX) B(F64_COPYSIGN) U(I32_WRAP_I64)             \
    U(I32_TRUNC_F32_S) U(I32_TRUNC_F32_U) U(I32_TRUNC_F64_S) U(I32_TRUNC_F64_U)             \
    U(I64_EXTEND_I32_S) U(I64_EXTEND_I32_U) U(I64_TRUNC_F32_S) U(I64_TRUNC_F32_U)           \
    U(I64_TRUNC_F64_S) U(I64_TRUNC_F64_U) U(F32_CONVERT_I32_S) U(F32_CONVERT_I32_U)         \
    U(F32_CONVERT_I64_S) U(F32_CONVERT_I64_U) U(F32_DEMOTE_F64) U(F64_CONVERT_I32_S)        \
    U(F64_CONVERT_I32_U) U(F64_CONVERT_I64_S) U(F64_CONVERT_I64_U) U(F64_PROMOTE_F32)       \
    U(I32_REINTERPRET_F32) U(I64_REINTERPRET_F64) U(F32_REINTERPRET_I32)                    \
    U(F64_REINTERPRET_I64) U(I32_EXTEND8_S) U(I32_EXTEND16_S) U(I64_EXTEND8_S)              \
    U(I64_EXTEND16_S) U(I64_EXTEND32_S)

#define WASM_OP_ENUM(name) WASM_OP_##name,
#define WASM_OP_ENUM_I(name) WASM_OP_##name##_I,
#define WASM_OP_ENUM_BR(name) WASM_OP_BR_IF_##name, WASM_OP_BR_IF_##name##_I,                 \
                              WASM_OP_BR_UNLESS_##name, WASM_OP_BR_UNLESS_##name##_I,
enum wasm_internal_op {
    WASM_CONTROL_OPS(WASM_OP_ENUM)
    WASM_NUMERIC_OPS(WASM_OP_ENUM, WASM_OP_ENUM)
    WASM_NUMERIC_OPS(WASM_OP_ENUM_I, WASM_OP_ENUM_I) /* unary ones unused */
    WASM_FUSED_COMPARES(WASM_OP_ENUM_BR)
    WASM_OP_COUNT
};
#undef WASM_OP_ENUM
#undef WASM_OP_ENUM_I
#undef WASM_OP_ENUM_BR
#define WASM_OP_NUMERIC WASM_OP_I32_EQZ
#define WASM_OP_NUMERIC_I WASM_OP_I32_EQZ_I
/* The four fused forms of comparison `name` are consecutive, from
 * WASM_OP_BR_IF_name: BR_IF, BR_IF _I, BR_UNLESS, BR_UNLESS _I. */

typedef union wasm_cell {
    const void *op;                /* handler address */
    const union wasm_cell *target; /* branch target */
    const void *ptr;               /* CALL: the wasm_code_func */
    uint64_t u64;
    struct {
        uint32_t a, b;
    } pair;
} wasm_cell;

/* Where each instruction came from, for trap locations. */
typedef struct wasm_code_origin {
    uint32_t cell;   /* index of the instruction's first cell */
    uint32_t offset; /* byte offset of the wasm instruction in the module */
} wasm_code_origin;

/* One compiled (defined) function. */
typedef struct wasm_code_func {
    uint32_t func_index;
    uint32_t param_slots;
    uint32_t local_slots;  /* declared locals (zeroed at entry) */
    uint32_t result_count;
    uint32_t frame_slots;  /* params + locals + the deepest operand stack */
    wasm_cell *code;
    size_t code_len;
    wasm_code_origin *origins;
    size_t origin_count;
} wasm_code_func;

/* Compiles every defined function of a validated module. Returns an array
 * of def->func_count - def->func_import_count functions, or NULL with err. */
wasm_code_func *wasm_compile(const wasm_module_def *def, cx_error *err);
void wasm_compile_free(wasm_code_func *funcs, size_t count);

/* The interpreter's handler addresses, indexed by enum wasm_internal_op
 * (exec.c). */
const void *const *wasm_exec_handlers(void);

/* The wasm byte offset of the instruction at cell `pc` of f. */
uint32_t wasm_code_origin_of(const wasm_code_func *f, size_t pc);

#endif
