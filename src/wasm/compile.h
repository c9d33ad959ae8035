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
 * Heights are counted in slots from the frame pointer: slot 0 is the first
 * parameter, then the declared locals, then the operand stack.
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

/* Internal instructions other than the numeric ones. Immediates in [].
 * "target" is a cell pointer; "keep/height" a pair packed in one cell. */
#define WASM_CONTROL_OPS(X)                                                                     \
    X(UNREACHABLE)        /* */                                                                 \
    X(FUEL)               /* [cost] */                                                          \
    X(JUMP)               /* [target] */                                                        \
    X(BR_DROP)            /* [target, keep|height] */                                           \
    X(BR_IF)              /* [target] */                                                        \
    X(BR_IF_DROP)         /* [target, keep|height] */                                           \
    X(BR_UNLESS)          /* [target]: if's condition false */                                  \
    X(BR_TABLE)           /* [count, then count+1 x (target, keep|height)] */                   \
    X(RETURN)             /* [arity] */                                                         \
    X(CALL)               /* [wasm_code_func *]: a function defined by this module */          \
    X(CALL_IMPORT)        /* [function index] */                                                \
    X(CALL_INDIRECT)      /* [type index | table index] */                                      \
    X(DROP)               /* */                                                                 \
    X(SELECT)             /* */                                                                 \
    X(LOCAL_GET)          /* [slot] */                                                          \
    X(LOCAL_SET)          /* [slot] */                                                          \
    X(LOCAL_TEE)          /* [slot] */                                                          \
    X(GLOBAL_GET)         /* [index] */                                                         \
    X(GLOBAL_SET)         /* [index] */                                                         \
    X(TABLE_GET)          /* [table] */                                                         \
    X(TABLE_SET)          /* [table] */                                                         \
    X(TABLE_SIZE)         /* [table] */                                                         \
    X(TABLE_GROW)         /* [table] */                                                         \
    X(TABLE_FILL)         /* [table] */                                                         \
    X(TABLE_COPY)         /* [dst table | src table] */                                         \
    X(TABLE_INIT)         /* [elem | table] */                                                  \
    X(ELEM_DROP)          /* [elem] */                                                          \
    X(LOAD32)             /* [offset]: i32.load, f32.load, i64.load32_u */                     \
    X(LOAD64)             /* [offset] */                                                        \
    X(LOAD8_S32)          /* [offset] */                                                        \
    X(LOAD8_U)            /* [offset] */                                                        \
    X(LOAD16_S32)         /* [offset] */                                                        \
    X(LOAD16_U)           /* [offset] */                                                        \
    X(LOAD8_S64)          /* [offset] */                                                        \
    X(LOAD16_S64)         /* [offset] */                                                        \
    X(LOAD32_S64)         /* [offset] */                                                        \
    X(STORE8)             /* [offset] */                                                        \
    X(STORE16)            /* [offset] */                                                        \
    X(STORE32)            /* [offset] */                                                        \
    X(STORE64)            /* [offset] */                                                        \
    X(MEMORY_SIZE)        /* */                                                                 \
    X(MEMORY_GROW)        /* */                                                                 \
    X(MEMORY_INIT)        /* [data] */                                                          \
    X(DATA_DROP)          /* [data] */                                                          \
    X(MEMORY_COPY)        /* */                                                                 \
    X(MEMORY_FILL)        /* */                                                                 \
    X(CONST)              /* [value] */                                                         \
    X(REF_IS_NULL)        /* */                                                                 \
    X(REF_FUNC)           /* [function index] */                                                \
    X(I32_TRUNC_SAT_F32_S) X(I32_TRUNC_SAT_F32_U) X(I32_TRUNC_SAT_F64_S)                        \
    X(I32_TRUNC_SAT_F64_U) X(I64_TRUNC_SAT_F32_S) X(I64_TRUNC_SAT_F32_U)                        \
    X(I64_TRUNC_SAT_F64_S) X(I64_TRUNC_SAT_F64_U)

/* The numeric instructions 0x45..0xc4, in opcode order, so that the
 * internal opcode is WASM_OP_NUMERIC + (opcode - 0x45). */
#define WASM_NUMERIC_OPS(X)                                                                     \
    X(I32_EQZ) X(I32_EQ) X(I32_NE) X(I32_LT_S) X(I32_LT_U) X(I32_GT_S) X(I32_GT_U)             \
    X(I32_LE_S) X(I32_LE_U) X(I32_GE_S) X(I32_GE_U)                                             \
    X(I64_EQZ) X(I64_EQ) X(I64_NE) X(I64_LT_S) X(I64_LT_U) X(I64_GT_S) X(I64_GT_U)             \
    X(I64_LE_S) X(I64_LE_U) X(I64_GE_S) X(I64_GE_U)                                             \
    X(F32_EQ) X(F32_NE) X(F32_LT) X(F32_GT) X(F32_LE) X(F32_GE)                                 \
    X(F64_EQ) X(F64_NE) X(F64_LT) X(F64_GT) X(F64_LE) X(F64_GE)                                 \
    X(I32_CLZ) X(I32_CTZ) X(I32_POPCNT) X(I32_ADD) X(I32_SUB) X(I32_MUL) X(I32_DIV_S)          \
    X(I32_DIV_U) X(I32_REM_S) X(I32_REM_U) X(I32_AND) X(I32_OR) X(I32_XOR) X(I32_SHL)          \
    X(I32_SHR_S) X(I32_SHR_U) X(I32_ROTL) X(I32_ROTR)                                           \
    X(I64_CLZ) X(I64_CTZ) X(I64_POPCNT) X(I64_ADD) X(I64_SUB) X(I64_MUL) X(I64_DIV_S)          \
    X(I64_DIV_U) X(I64_REM_S) X(I64_REM_U) X(I64_AND) X(I64_OR) X(I64_XOR) X(I64_SHL)          \
    X(I64_SHR_S) X(I64_SHR_U) X(I64_ROTL) X(I64_ROTR)                                           \
    X(F32_ABS) X(F32_NEG) X(F32_CEIL) X(F32_FLOOR) X(F32_TRUNC) X(F32_NEAREST) X(F32_SQRT)     \
    X(F32_ADD) X(F32_SUB) X(F32_MUL) X(F32_DIV) X(F32_MIN) X(F32_MAX) X(F32_COPYSIGN)          \
    X(F64_ABS) X(F64_NEG) X(F64_CEIL) X(F64_FLOOR) X(F64_TRUNC) X(F64_NEAREST) X(F64_SQRT)     \
    X(F64_ADD) X(F64_SUB) X(F64_MUL) X(F64_DIV) X(F64_MIN) X(F64_MAX) X(F64_COPYSIGN)          \
    X(I32_WRAP_I64) X(I32_TRUNC_F32_S) X(I32_TRUNC_F32_U) X(I32_TRUNC_F64_S)                    \
    X(I32_TRUNC_F64_U) X(I64_EXTEND_I32_S) X(I64_EXTEND_I32_U) X(I64_TRUNC_F32_S)              \
    X(I64_TRUNC_F32_U) X(I64_TRUNC_F64_S) X(I64_TRUNC_F64_U) X(F32_CONVERT_I32_S)              \
    X(F32_CONVERT_I32_U) X(F32_CONVERT_I64_S) X(F32_CONVERT_I64_U) X(F32_DEMOTE_F64)           \
    X(F64_CONVERT_I32_S) X(F64_CONVERT_I32_U) X(F64_CONVERT_I64_S) X(F64_CONVERT_I64_U)        \
    X(F64_PROMOTE_F32) X(I32_REINTERPRET_F32) X(I64_REINTERPRET_F64) X(F32_REINTERPRET_I32)    \
    X(F64_REINTERPRET_I64) X(I32_EXTEND8_S) X(I32_EXTEND16_S) X(I64_EXTEND8_S)                 \
    X(I64_EXTEND16_S) X(I64_EXTEND32_S)

#define WASM_OP_ENUM(name) WASM_OP_##name,
enum wasm_internal_op {
    WASM_CONTROL_OPS(WASM_OP_ENUM)
    WASM_NUMERIC_OPS(WASM_OP_ENUM)
    WASM_OP_COUNT
};
#undef WASM_OP_ENUM
#define WASM_OP_NUMERIC WASM_OP_I32_EQZ

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
