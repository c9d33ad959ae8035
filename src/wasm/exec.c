/* The interpreter: runs the internal code of compile.h.
 *
 * Direct threading: every instruction's first cell is the address of its
 * handler, and each handler ends by jumping to the next one (computed goto,
 * a GCC/clang extension). Operands and locals live in one flat array of
 * 64-bit slots owned by the store; a call makes the callee's arguments the
 * first slots of its frame, so nothing is copied. Frames are an explicit
 * array too: wasm calls never recurse in C, the call depth is a counter and
 * running out of frames or slots is the trap "call stack exhausted".
 *
 * Metering: FUEL instructions subtract a basic block's cost from a local
 * slice of the store's fuel; only when the slice runs out does the slow path
 * settle the account, check the deadline and hand out the next slice. So
 * the clock is read every FUEL_SLICE units at most, and the fuel used (and
 * the point where it runs out) depends only on the code and the input.
 *
 * Nothing here allocates, except a host call with more than 16 arguments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "wasm/runtime.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the interpreter assumes a little-endian host"
#endif

#define FUEL_SLICE 16384
#define UNMETERED_FUEL (UINT64_MAX / 4)
#define HOST_INLINE_VALUES 16

#if defined(__clang__)
#define NOT_DUPLICATED __attribute__((noinline))
#else
#define NOT_DUPLICATED __attribute__((noinline, noclone))
#endif

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---- value helpers -------------------------------------------------------- */

static inline float f32_of(uint64_t slot)
{
    uint32_t bits = (uint32_t)slot;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint64_t slot_of_f32(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static inline double f64_of(uint64_t slot)
{
    double d;
    memcpy(&d, &slot, sizeof d);
    return d;
}

static inline uint64_t slot_of_f64(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return bits;
}

/* min/max: NaN if either is NaN (an arithmetic NaN from the operands),
 * and -0 < +0. */
static inline uint64_t f32_min(uint64_t a, uint64_t b)
{
    float x = f32_of(a), y = f32_of(b);
    if (isnan(x) || isnan(y))
        return slot_of_f32(x + y);
    if (x == y)
        return (uint32_t)(a | b);
    return x < y ? (uint32_t)a : (uint32_t)b;
}

static inline uint64_t f32_max(uint64_t a, uint64_t b)
{
    float x = f32_of(a), y = f32_of(b);
    if (isnan(x) || isnan(y))
        return slot_of_f32(x + y);
    if (x == y)
        return (uint32_t)(a & b);
    return x > y ? (uint32_t)a : (uint32_t)b;
}

static inline uint64_t f64_min(uint64_t a, uint64_t b)
{
    double x = f64_of(a), y = f64_of(b);
    if (isnan(x) || isnan(y))
        return slot_of_f64(x + y);
    if (x == y)
        return a | b;
    return x < y ? a : b;
}

static inline uint64_t f64_max(uint64_t a, uint64_t b)
{
    double x = f64_of(a), y = f64_of(b);
    if (isnan(x) || isnan(y))
        return slot_of_f64(x + y);
    if (x == y)
        return a & b;
    return x > y ? a : b;
}

/* libm's rounding functions return a signalling NaN unchanged; wasm wants
 * an arithmetic (quiet) NaN. */
static inline uint64_t f32_round(uint64_t a, float (*round_fn)(float))
{
    float x = f32_of(a);
    return isnan(x) ? (uint32_t)(a | 0x00400000u) : slot_of_f32(round_fn(x));
}

static inline uint64_t f64_round(uint64_t a, double (*round_fn)(double))
{
    double x = f64_of(a);
    return isnan(x) ? a | 0x0008000000000000u : slot_of_f64(round_fn(x));
}

static inline uint32_t rotl32(uint32_t x, uint32_t n)
{
    n &= 31;
    return (x << n) | (x >> ((32 - n) & 31));
}

static inline uint32_t rotr32(uint32_t x, uint32_t n)
{
    n &= 31;
    return (x >> n) | (x << ((32 - n) & 31));
}

static inline uint64_t rotl64(uint64_t x, uint64_t n)
{
    n &= 63;
    return (x << n) | (x >> ((64 - n) & 63));
}

static inline uint64_t rotr64(uint64_t x, uint64_t n)
{
    n &= 63;
    return (x >> n) | (x << ((64 - n) & 63));
}

/* Saturating truncations: NaN -> 0, out of range -> the nearest bound. */
static inline uint64_t sat_i32_s(double x)
{
    if (isnan(x))
        return 0;
    if (x <= -2147483648.0)
        return (uint32_t)INT32_MIN;
    if (x >= 2147483647.0)
        return (uint32_t)INT32_MAX;
    return (uint32_t)(int32_t)x;
}

static inline uint64_t sat_i32_u(double x)
{
    if (isnan(x) || x <= 0.0)
        return 0;
    if (x >= 4294967295.0)
        return UINT32_MAX;
    return (uint32_t)x;
}

static inline uint64_t sat_i64_s(double x)
{
    if (isnan(x))
        return 0;
    if (x <= -9223372036854775808.0)
        return (uint64_t)INT64_MIN;
    if (x >= 9223372036854775808.0)
        return (uint64_t)INT64_MAX;
    return (uint64_t)(int64_t)x;
}

static inline uint64_t sat_i64_u(double x)
{
    if (isnan(x) || x <= 0.0)
        return 0;
    if (x >= 18446744073709551616.0)
        return UINT64_MAX;
    return (uint64_t)x;
}

/* ---- functions types, fuel, host calls ------------------------------------ */

static bool functype_matches(const wasm_functype *t, const wasm_functype_def *d)
{
    if (t->params == d->types)
        return true;
    if (t->param_count != d->param_count || t->result_count != d->result_count)
        return false;
    for (uint32_t i = 0; i < t->param_count; i++)
        if (t->params[i] != d->types[i])
            return false;
    for (uint32_t i = 0; i < t->result_count; i++)
        if (t->results[i] != d->types[d->param_count + i])
            return false;
    return true;
}

typedef struct fuel_slice {
    int64_t left;   /* of the slice, may go negative by one block's cost */
    uint64_t given; /* size of the slice taken from the store */
} fuel_slice;

static void fuel_settle(wasm_store *s, fuel_slice *f)
{
    s->fuel_used += f->given - (uint64_t)f->left;
    f->given = 0;
    f->left = 0;
}

/* Settles the slice, checks the deadline, and takes a new slice that
 * covers `cost`. Returns 0 or the trap kind. */
static wasm_trap_kind fuel_refill(wasm_store *s, fuel_slice *f, uint64_t cost)
{
    fuel_settle(s, f);
    if (s->deadline_ns && time_monotonic_ns() >= s->deadline_ns)
        return WASM_TRAP_DEADLINE_EXCEEDED;
    uint64_t remaining = UNMETERED_FUEL;
    if (s->fuel_limit)
        remaining = s->fuel_limit > s->fuel_used ? s->fuel_limit - s->fuel_used : 0;
    if (remaining < cost)
        return WASM_TRAP_FUEL_EXHAUSTED;
    uint64_t give = remaining < FUEL_SLICE ? remaining : FUEL_SLICE;
    if (give < cost)
        give = cost;
    f->given = give;
    f->left = (int64_t)(give - cost);
    return WASM_TRAP_NONE;
}

/* Bulk instructions (memory.fill/copy/init, table.fill/copy/init/grow) pay
 * for their length on top of their block's cost: BULK_BYTES_PER_FUEL bytes
 * or BULK_ELEMS_PER_FUEL elements per unit, rounded up, charged before the
 * work is done. A charge of BULK_CHECK units or more always goes through
 * fuel_refill, so the deadline is checked before any large operation. */
#define BULK_BYTES_PER_FUEL 64
#define BULK_ELEMS_PER_FUEL 8
#define BULK_CHECK 1024

static inline wasm_trap_kind fuel_charge(wasm_store *s, fuel_slice *f, uint64_t cost)
{
    if (cost < BULK_CHECK && f->left >= (int64_t)cost) {
        f->left -= (int64_t)cost;
        return WASM_TRAP_NONE;
    }
    return fuel_refill(s, f, cost);
}

static int call_host(wasm_func *f, wasm_memory *memory, uint64_t *slots, wasm_trap *trap)
{
    wasm_value args_inline[HOST_INLINE_VALUES], results_inline[HOST_INLINE_VALUES];
    uint32_t np = f->type.param_count, nr = f->type.result_count;
    wasm_value *args = args_inline, *results = results_inline;
    if (np > HOST_INLINE_VALUES)
        args = malloc(np * sizeof *args);
    if (nr > HOST_INLINE_VALUES)
        results = malloc(nr * sizeof *results);
    int rc = -1;
    if (!args || !results) {
        wasm_trap_set(trap, WASM_TRAP_HOST, "out of memory calling a host function");
        goto out;
    }
    for (uint32_t i = 0; i < np; i++)
        args[i] = wasm_value_from_slot(f->type.params[i], slots[i]);
    for (uint32_t i = 0; i < nr; i++)
        results[i] = wasm_value_from_slot(f->type.results[i], 0);
    memset(trap, 0, sizeof *trap);
    if (f->host(f->env, memory, args, results, trap) != 0) {
        if (trap->kind == WASM_TRAP_NONE)
            trap->kind = WASM_TRAP_HOST;
        if (!trap->message[0])
            wasm_trap_set(trap, trap->kind, wasm_trap_message(trap->kind));
        goto out;
    }
    for (uint32_t i = 0; i < nr; i++) {
        if (results[i].type != f->type.results[i]) {
            wasm_trap_set(trap, WASM_TRAP_HOST, "host function returned a value of the wrong type");
            goto out;
        }
        slots[i] = wasm_value_to_slot(&results[i]);
    }
    rc = 0;
out:
    if (args != args_inline)
        free(args);
    if (results != results_inline)
        free(results);
    return rc;
}

static void locate_trap(wasm_trap *trap, const wasm_instance *inst, const wasm_code_func *fn,
                        const wasm_cell *pc)
{
    const wasm_module_def *def = inst->module->def;
    trap->func_index = fn->func_index;
    const char *name = def->funcs[fn->func_index].name;
    snprintf(trap->func_name, sizeof trap->func_name, "%s", name ? name : "");
    uint32_t offset = wasm_code_origin_of(fn, (size_t)(pc - fn->code));
    trap->code_offset = offset >= def->code_section_offset
                            ? (uint32_t)(offset - def->code_section_offset)
                            : offset;
}

/* Zeroes a callee's declared locals; most functions have a few, and a
 * memset call would cost more than the stores. */
static inline void zero_locals(uint64_t *locals, uint32_t n)
{
    switch (n) {
    case 4:
        locals[3] = 0;
        /* fall through */
    case 3:
        locals[2] = 0;
        /* fall through */
    case 2:
        locals[1] = 0;
        /* fall through */
    case 1:
        locals[0] = 0;
        /* fall through */
    case 0:
        break;
    default:
        memset(locals, 0, (size_t)n * sizeof *locals);
    }
}

/* ---- the interpreter ------------------------------------------------------ */

#define HANDLER_ADDRESS(name) &&L_##name,
#define HANDLER_ADDRESS_I(name) &&L_##name##_I,
#define NO_HANDLER(name) &&L_UNREACHABLE,
#define FUSED_ADDRESSES(name)                                                                   \
    &&L_BR_IF_##name, &&L_BR_IF_##name##_I, &&L_BR_UNLESS_##name, &&L_BR_UNLESS_##name##_I,

/* Runs fn in inst with its frame at fp (arguments in place). With s NULL,
 * only returns the handler table through *handlers. Never inlined or cloned:
 * the label addresses in the code must come from this one copy. */
NOT_DUPLICATED static int
interpret(wasm_store *s, const wasm_code_func *fn, wasm_instance *inst, uint64_t *fp,
          wasm_trap *trap, const void *const **handlers)
{
    static const void *const handler_table[] = {
        WASM_CONTROL_OPS(HANDLER_ADDRESS) WASM_NUMERIC_OPS(HANDLER_ADDRESS, HANDLER_ADDRESS)
        WASM_NUMERIC_OPS(NO_HANDLER, HANDLER_ADDRESS_I) WASM_FUSED_COMPARES(FUSED_ADDRESSES)};
    _Static_assert(sizeof handler_table / sizeof *handler_table == WASM_OP_COUNT,
                   "one handler per internal instruction");
    if (!s) {
        *handlers = handler_table;
        return 0;
    }

    const uint32_t entry_depth = s->depth;
    const size_t entry_stack_used = s->stack_used;
    const uint32_t max_depth = s->limits.max_call_depth;
    uint64_t *const stack_end = s->stack + s->limits.max_stack_values;
    const wasm_cell *pc = fn->code;
    uint8_t *mem = NULL;
    uint64_t mem_size = 0;
    fuel_slice fuel = {0, 0};
    wasm_trap_kind kind = WASM_TRAP_NONE;
    /* Call setup shared by the call instructions. */
    wasm_func *callee = NULL;
    uint64_t *call_fp = NULL;
    const wasm_cell *next_pc = NULL;

#define NEXT(n)                                                                                 \
    do {                                                                                        \
        pc += (n);                                                                              \
        goto *pc->op;                                                                           \
    } while (0)
#define JUMP_TO(cell)                                                                           \
    do {                                                                                        \
        pc = (cell).target;                                                                     \
        goto *pc->op;                                                                           \
    } while (0)
#define TRAP(k)                                                                                 \
    do {                                                                                        \
        kind = (k);                                                                             \
        goto trapped;                                                                           \
    } while (0)
#define LOAD_MEMORY()                                                                           \
    do {                                                                                        \
        mem = inst->memory ? inst->memory->data : NULL;                                         \
        mem_size = inst->memory ? inst->memory->size : 0;                                       \
    } while (0)
/* Operands named by the instruction's immediates. */
#define SLOT_A(cell) fp[pc[cell].pair.a]
#define SLOT_B(cell) fp[pc[cell].pair.b]
#define SLOT(cell) fp[pc[cell].u64]
/* Charges a bulk instruction of n units for its length. */
#define BULK_CHARGE(n, per_fuel)                                                                \
    do {                                                                                        \
        if ((n) != 0 &&                                                                         \
            (kind = fuel_charge(s, &fuel, ((uint64_t)(n) + (per_fuel) - 1) / (per_fuel))) !=    \
                WASM_TRAP_NONE)                                                                 \
            goto trapped;                                                                       \
    } while (0)

    if ((kind = fuel_refill(s, &fuel, 0)) != WASM_TRAP_NONE)
        goto trapped;
    if (s->depth >= max_depth || fp + fn->frame_slots > stack_end) {
        kind = WASM_TRAP_CALL_STACK_EXHAUSTED;
        goto trapped;
    }
    s->depth++;
    memset(fp + fn->param_slots, 0, (size_t)fn->local_slots * sizeof *fp);
    LOAD_MEMORY();
    goto *pc->op;

    /* ---- control ---- */
L_UNREACHABLE:
    TRAP(WASM_TRAP_UNREACHABLE);
L_FUEL:
    fuel.left -= (int64_t)pc[1].u64;
    if (unlikely(fuel.left < 0)) {
        fuel.left += (int64_t)pc[1].u64;
        if ((kind = fuel_refill(s, &fuel, pc[1].u64)) != WASM_TRAP_NONE)
            goto trapped;
    }
    NEXT(2);
L_JUMP:
    JUMP_TO(pc[1]);
L_BR_DROP: {
    uint32_t keep = pc[2].pair.a;
    memmove(fp + pc[2].pair.b, fp + pc[3].u64, keep * sizeof *fp);
    JUMP_TO(pc[1]);
}
L_BR_IF:
    if ((uint32_t)SLOT(1))
        JUMP_TO(pc[2]);
    NEXT(3);
L_BR_IF_DROP:
    if ((uint32_t)SLOT(1)) {
        uint32_t keep = pc[3].pair.a;
        memmove(fp + pc[3].pair.b, fp + pc[4].u64, keep * sizeof *fp);
        JUMP_TO(pc[2]);
    }
    NEXT(5);
L_BR_UNLESS:
    if (!(uint32_t)SLOT(1))
        JUMP_TO(pc[2]);
    NEXT(3);
L_BR_TABLE: {
    uint64_t count = pc[1].u64;
    uint64_t *top = fp + pc[2].u64;
    uint64_t i = (uint32_t)*top;
    if (i > count)
        i = count;
    const wasm_cell *entry = pc + 3 + 2 * i;
    uint32_t keep = entry[1].pair.a;
    uint64_t *dst = fp + entry[1].pair.b;
    if (dst != top - keep)
        memmove(dst, top - keep, keep * sizeof *fp);
    JUMP_TO(entry[0]);
}
L_RETURN: {
    uint32_t n = pc[1].pair.a;
    const uint64_t *results = fp + pc[1].pair.b;
    if (n == 1)
        fp[0] = results[0];
    else if (results != fp)
        memmove(fp, results, n * sizeof *fp);
    s->depth--;
    if (s->depth == entry_depth)
        goto done;
    const wasm_frame *frame = &s->frames[s->depth];
    pc = frame->pc;
    fp = frame->fp;
    fn = frame->fn;
    if (frame->inst != inst) {
        inst = frame->inst;
        LOAD_MEMORY();
    }
    goto *pc->op;
}
L_CALL: {
    const wasm_code_func *target = pc[1].ptr;
    uint64_t *callee_fp = fp + pc[2].u64;
    if (unlikely(s->depth >= max_depth || callee_fp + target->frame_slots > stack_end))
        TRAP(WASM_TRAP_CALL_STACK_EXHAUSTED);
    wasm_frame *frame = &s->frames[s->depth++];
    frame->pc = pc + 3;
    frame->fp = fp;
    frame->fn = fn;
    frame->inst = inst;
    fp = callee_fp;
    zero_locals(fp + target->param_slots, target->local_slots);
    fn = target;
    pc = target->code;
    goto *pc->op;
}
L_CALL_IMPORT:
    callee = inst->funcs[pc[1].u64];
    call_fp = fp + pc[2].u64;
    next_pc = pc + 3;
    goto call_function;
L_CALL_INDIRECT: {
    uint32_t type_index = pc[1].pair.a;
    const wasm_table *table = inst->tables[pc[1].pair.b];
    uint32_t i = (uint32_t)SLOT_B(2);
    if (i >= table->size)
        TRAP(WASM_TRAP_UNDEFINED_ELEMENT);
    callee = (wasm_func *)(uintptr_t)table->elems[i];
    if (!callee)
        TRAP(WASM_TRAP_UNINITIALIZED_ELEMENT);
    const wasm_module *m = inst->module;
    if (callee->type_hash != m->type_hashes[type_index] ||
        !functype_matches(&callee->type, &m->def->types[type_index]))
        TRAP(WASM_TRAP_INDIRECT_CALL_MISMATCH);
    call_fp = fp + pc[2].pair.a;
    next_pc = pc + 3;
    goto call_function;
}
call_function:
    if (callee->code) {
        const wasm_code_func *target = callee->code;
        if (unlikely(s->depth >= max_depth || call_fp + target->frame_slots > stack_end))
            TRAP(WASM_TRAP_CALL_STACK_EXHAUSTED);
        wasm_frame *frame = &s->frames[s->depth++];
        frame->pc = next_pc;
        frame->fp = fp;
        frame->fn = fn;
        frame->inst = inst;
        fp = call_fp;
        zero_locals(fp + target->param_slots, target->local_slots);
        fn = target;
        pc = target->code;
        if (callee->inst != inst) {
            inst = callee->inst;
            LOAD_MEMORY();
        }
        goto *pc->op;
    } else {
        uint64_t *args = call_fp;
        uint32_t np = callee->type.param_count, nr = callee->type.result_count;
        if (unlikely(args + (nr > np ? nr : np) > stack_end))
            TRAP(WASM_TRAP_CALL_STACK_EXHAUSTED);
        fuel_settle(s, &fuel);
        s->stack_used = (size_t)(args + np - s->stack);
        int rc = call_host(callee, inst->memory, args, trap);
        s->stack_used = entry_stack_used;
        if (rc != 0) {
            kind = trap->kind;
            goto trapped_keep_message;
        }
        if ((kind = fuel_refill(s, &fuel, 0)) != WASM_TRAP_NONE)
            goto trapped;
        LOAD_MEMORY();
        pc = next_pc;
        goto *pc->op;
    }

    /* ---- parametric, variables ---- */
L_COPY:
    SLOT_B(1) = SLOT_A(1);
    NEXT(2);
L_CONST:
    SLOT(1) = pc[2].u64;
    NEXT(3);
L_SELECT:
    SLOT_B(2) = (uint32_t)SLOT_A(2) ? SLOT_A(1) : SLOT_B(1);
    NEXT(3);
L_GLOBAL_GET:
    SLOT_B(1) = inst->globals[pc[1].pair.a]->value;
    NEXT(2);
L_GLOBAL_SET:
    inst->globals[pc[1].pair.a]->value = SLOT_B(1);
    NEXT(2);

    /* ---- tables (on the operand stack in place; sp is its top) ---- */
L_TABLE_GET: {
    uint64_t *sp = fp + pc[1].u64;
    const wasm_table *t = inst->tables[pc[2].u64];
    uint32_t i = (uint32_t)sp[-1];
    if (i >= t->size)
        TRAP(WASM_TRAP_TABLE_OUT_OF_BOUNDS);
    sp[-1] = t->elems[i];
    NEXT(3);
}
L_TABLE_SET: {
    uint64_t *sp = fp + pc[1].u64;
    wasm_table *t = inst->tables[pc[2].u64];
    uint32_t i = (uint32_t)sp[-2];
    if (i >= t->size)
        TRAP(WASM_TRAP_TABLE_OUT_OF_BOUNDS);
    t->elems[i] = sp[-1];
    NEXT(3);
}
L_TABLE_SIZE: {
    uint64_t *sp = fp + pc[1].u64;
    *sp = inst->tables[pc[2].u64]->size;
    NEXT(3);
}
L_TABLE_GROW: {
    uint64_t *sp = fp + pc[1].u64;
    uint32_t n = (uint32_t)sp[-1];
    wasm_table *t = inst->tables[pc[2].u64];
    int64_t old = -1;
    if (wasm_table_can_grow(s, t, n)) {
        if ((kind = fuel_charge(s, &fuel, ((uint64_t)n + BULK_ELEMS_PER_FUEL - 1) /
                                              BULK_ELEMS_PER_FUEL)) != WASM_TRAP_NONE)
            goto trapped;
        old = wasm_table_grow(s, t, n, sp[-2]);
    }
    sp[-2] = (uint32_t)(int32_t)old;
    NEXT(3);
}
L_TABLE_FILL: {
    uint64_t *sp = fp + pc[1].u64;
    wasm_table *t = inst->tables[pc[2].u64];
    uint32_t n = (uint32_t)sp[-1];
    uint64_t value = sp[-2];
    uint32_t i = (uint32_t)sp[-3];
    if ((uint64_t)i + n > t->size)
        TRAP(WASM_TRAP_TABLE_OUT_OF_BOUNDS);
    BULK_CHARGE(n, BULK_ELEMS_PER_FUEL);
    for (uint32_t k = 0; k < n; k++)
        t->elems[i + k] = value;
    NEXT(3);
}
L_TABLE_COPY: {
    uint64_t *sp = fp + pc[1].u64;
    wasm_table *dst = inst->tables[pc[2].pair.a];
    const wasm_table *src = inst->tables[pc[2].pair.b];
    uint32_t n = (uint32_t)sp[-1], si = (uint32_t)sp[-2], di = (uint32_t)sp[-3];
    if ((uint64_t)si + n > src->size || (uint64_t)di + n > dst->size)
        TRAP(WASM_TRAP_TABLE_OUT_OF_BOUNDS);
    BULK_CHARGE(n, BULK_ELEMS_PER_FUEL);
    if (n)
        memmove(dst->elems + di, src->elems + si, (size_t)n * sizeof *dst->elems);
    NEXT(3);
}
L_TABLE_INIT: {
    uint64_t *sp = fp + pc[1].u64;
    const wasm_segment *seg = &inst->elems[pc[2].pair.a];
    wasm_table *t = inst->tables[pc[2].pair.b];
    uint32_t n = (uint32_t)sp[-1], si = (uint32_t)sp[-2], di = (uint32_t)sp[-3];
    if ((uint64_t)si + n > seg->size || (uint64_t)di + n > t->size)
        TRAP(WASM_TRAP_TABLE_OUT_OF_BOUNDS);
    BULK_CHARGE(n, BULK_ELEMS_PER_FUEL);
    if (n)
        memcpy(t->elems + di, seg->refs + si, (size_t)n * sizeof *t->elems);
    NEXT(3);
}
L_ELEM_DROP:
    inst->elems[pc[1].u64].size = 0;
    NEXT(2);

    /* ---- memory ---- */
    /* [addr|value-or-dst, offset|add]: the address is the 32-bit sum of the
     * operand and `add` (an i32.add of a constant folded in by the
     * compiler), plus the offset. The effective address is 33 bits at most,
     * so one 64-bit compare checks the whole access. */
#define EFFECTIVE(width)                                                                        \
    uint64_t ea = (uint64_t)(uint32_t)(SLOT_A(1) + pc[2].pair.b) + pc[2].pair.a;               \
    if (unlikely(ea + (width) > mem_size))                                                      \
        TRAP(WASM_TRAP_MEMORY_OUT_OF_BOUNDS);
#define LOAD_OP(name, ctype, width, convert)                                                    \
    L_##name: {                                                                                 \
        EFFECTIVE(width)                                                                        \
        ctype v;                                                                                \
        memcpy(&v, mem + ea, width);                                                            \
        SLOT_B(1) = convert;                                                                    \
        NEXT(3);                                                                                \
    }
    LOAD_OP(LOAD32, uint32_t, 4, v)
    LOAD_OP(LOAD64, uint64_t, 8, v)
    LOAD_OP(LOAD8_S32, int8_t, 1, (uint32_t)(int32_t)v)
    LOAD_OP(LOAD8_U, uint8_t, 1, v)
    LOAD_OP(LOAD16_S32, int16_t, 2, (uint32_t)(int32_t)v)
    LOAD_OP(LOAD16_U, uint16_t, 2, v)
    LOAD_OP(LOAD8_S64, int8_t, 1, (uint64_t)(int64_t)v)
    LOAD_OP(LOAD16_S64, int16_t, 2, (uint64_t)(int64_t)v)
    LOAD_OP(LOAD32_S64, int32_t, 4, (uint64_t)(int64_t)v)
#define STORE_OP(name, ctype, width)                                                            \
    L_##name: {                                                                                 \
        EFFECTIVE(width)                                                                        \
        ctype v = (ctype)SLOT_B(1);                                                             \
        memcpy(mem + ea, &v, width);                                                            \
        NEXT(3);                                                                                \
    }
    STORE_OP(STORE8, uint8_t, 1)
    STORE_OP(STORE16, uint16_t, 2)
    STORE_OP(STORE32, uint32_t, 4)
    STORE_OP(STORE64, uint64_t, 8)
L_MEMORY_SIZE:
    SLOT(1) = (uint32_t)(mem_size / WASM_PAGE_SIZE);
    NEXT(2);
L_MEMORY_GROW: {
    uint64_t *sp = fp + pc[1].u64;
    int64_t old = wasm_memory_grow(inst->memory, (uint32_t)sp[-1]);
    sp[-1] = (uint32_t)(int32_t)old;
    LOAD_MEMORY();
    NEXT(2);
}
L_MEMORY_INIT: {
    uint64_t *sp = fp + pc[1].u64;
    const wasm_segment *seg = &inst->datas[pc[2].u64];
    uint32_t n = (uint32_t)sp[-1], si = (uint32_t)sp[-2], di = (uint32_t)sp[-3];
    if ((uint64_t)si + n > seg->size || (uint64_t)di + n > mem_size)
        TRAP(WASM_TRAP_MEMORY_OUT_OF_BOUNDS);
    BULK_CHARGE(n, BULK_BYTES_PER_FUEL);
    if (n)
        memcpy(mem + di, seg->bytes + si, n);
    NEXT(3);
}
L_DATA_DROP:
    inst->datas[pc[1].u64].size = 0;
    NEXT(2);
L_MEMORY_COPY: {
    uint64_t *sp = fp + pc[1].u64;
    uint32_t n = (uint32_t)sp[-1], si = (uint32_t)sp[-2], di = (uint32_t)sp[-3];
    if ((uint64_t)si + n > mem_size || (uint64_t)di + n > mem_size)
        TRAP(WASM_TRAP_MEMORY_OUT_OF_BOUNDS);
    BULK_CHARGE(n, BULK_BYTES_PER_FUEL);
    if (n)
        memmove(mem + di, mem + si, n);
    NEXT(2);
}
L_MEMORY_FILL: {
    uint64_t *sp = fp + pc[1].u64;
    uint32_t n = (uint32_t)sp[-1], di = (uint32_t)sp[-3];
    uint8_t value = (uint8_t)sp[-2];
    if ((uint64_t)di + n > mem_size)
        TRAP(WASM_TRAP_MEMORY_OUT_OF_BOUNDS);
    BULK_CHARGE(n, BULK_BYTES_PER_FUEL);
    if (n)
        memset(mem + di, value, n);
    NEXT(2);
}

    /* ---- references ---- */
L_REF_IS_NULL:
    SLOT_B(1) = SLOT_A(1) == 0;
    NEXT(2);
L_REF_FUNC:
    SLOT_B(1) = (uint64_t)(uintptr_t)inst->funcs[pc[1].pair.a];
    NEXT(2);

    /* ---- numeric ---- */
/* Unary [a|dst]; binary [a|b, dst] and its immediate form [a|dst, b]. */
#define UNARY(name, expr)                                                                       \
    L_##name: {                                                                                 \
        uint64_t a = SLOT_A(1);                                                                 \
        SLOT_B(1) = (expr);                                                                     \
        NEXT(2);                                                                                \
    }
#define BINARY(name, expr)                                                                      \
    L_##name: {                                                                                 \
        uint64_t a = SLOT_A(1), b = SLOT_B(1);                                                  \
        SLOT(2) = (expr);                                                                       \
        NEXT(3);                                                                                \
    }                                                                                           \
    L_##name##_I: {                                                                             \
        uint64_t a = SLOT_A(1), b = pc[2].u64;                                                  \
        SLOT_B(1) = (expr);                                                                     \
        NEXT(3);                                                                                \
    }
/* Division and remainder: `check` may trap. */
#define DIVIDE(name, ctype, convert, check, expr)                                               \
    L_##name: {                                                                                 \
        ctype a = convert(SLOT_A(1)), b = convert(SLOT_B(1));                                   \
        check;                                                                                  \
        SLOT(2) = (expr);                                                                       \
        NEXT(3);                                                                                \
    }                                                                                           \
    L_##name##_I: {                                                                             \
        ctype a = convert(SLOT_A(1)), b = convert(pc[2].u64);                                   \
        check;                                                                                  \
        SLOT_B(1) = (expr);                                                                     \
        NEXT(3);                                                                                \
    }
#define U32(x) ((uint32_t)(x))
#define S32(x) ((int32_t)(uint32_t)(x))
#define S64(x) ((int64_t)(x))
#define F32(x) f32_of(x)
#define F64(x) f64_of(x)

    UNARY(I32_EQZ, U32(a) == 0)
    BINARY(I32_EQ, U32(a) == U32(b))
    BINARY(I32_NE, U32(a) != U32(b))
    BINARY(I32_LT_S, S32(a) < S32(b))
    BINARY(I32_LT_U, U32(a) < U32(b))
    BINARY(I32_GT_S, S32(a) > S32(b))
    BINARY(I32_GT_U, U32(a) > U32(b))
    BINARY(I32_LE_S, S32(a) <= S32(b))
    BINARY(I32_LE_U, U32(a) <= U32(b))
    BINARY(I32_GE_S, S32(a) >= S32(b))
    BINARY(I32_GE_U, U32(a) >= U32(b))
    UNARY(I64_EQZ, a == 0)
    BINARY(I64_EQ, a == b)
    BINARY(I64_NE, a != b)
    BINARY(I64_LT_S, S64(a) < S64(b))
    BINARY(I64_LT_U, a < b)
    BINARY(I64_GT_S, S64(a) > S64(b))
    BINARY(I64_GT_U, a > b)
    BINARY(I64_LE_S, S64(a) <= S64(b))
    BINARY(I64_LE_U, a <= b)
    BINARY(I64_GE_S, S64(a) >= S64(b))
    BINARY(I64_GE_U, a >= b)
    BINARY(F32_EQ, F32(a) == F32(b))
    BINARY(F32_NE, F32(a) != F32(b))
    BINARY(F32_LT, F32(a) < F32(b))
    BINARY(F32_GT, F32(a) > F32(b))
    BINARY(F32_LE, F32(a) <= F32(b))
    BINARY(F32_GE, F32(a) >= F32(b))
    BINARY(F64_EQ, F64(a) == F64(b))
    BINARY(F64_NE, F64(a) != F64(b))
    BINARY(F64_LT, F64(a) < F64(b))
    BINARY(F64_GT, F64(a) > F64(b))
    BINARY(F64_LE, F64(a) <= F64(b))
    BINARY(F64_GE, F64(a) >= F64(b))

    UNARY(I32_CLZ, U32(a) ? (uint32_t)__builtin_clz(U32(a)) : 32u)
    UNARY(I32_CTZ, U32(a) ? (uint32_t)__builtin_ctz(U32(a)) : 32u)
    UNARY(I32_POPCNT, (uint32_t)__builtin_popcount(U32(a)))
    BINARY(I32_ADD, U32(U32(a) + U32(b)))
    BINARY(I32_SUB, U32(U32(a) - U32(b)))
    BINARY(I32_MUL, U32(U32(a) * U32(b)))
#define CHECK_ZERO                                                                              \
    if (b == 0)                                                                                 \
    TRAP(WASM_TRAP_DIVIDE_BY_ZERO)
    DIVIDE(I32_DIV_S, int32_t, S32,
           CHECK_ZERO; if (a == INT32_MIN && b == -1) TRAP(WASM_TRAP_INTEGER_OVERFLOW),
           U32(a / b))
    DIVIDE(I32_DIV_U, uint32_t, U32, CHECK_ZERO, a / b)
    DIVIDE(I32_REM_S, int32_t, S32, CHECK_ZERO, b == -1 ? 0 : U32(a % b))
    DIVIDE(I32_REM_U, uint32_t, U32, CHECK_ZERO, a % b)
    BINARY(I32_AND, U32(a & b))
    BINARY(I32_OR, U32(a | b))
    BINARY(I32_XOR, U32(a ^ b))
    BINARY(I32_SHL, U32(U32(a) << (b & 31)))
    BINARY(I32_SHR_S, U32(S32(a) >> (b & 31)))
    BINARY(I32_SHR_U, U32(U32(a) >> (b & 31)))
    BINARY(I32_ROTL, rotl32(U32(a), U32(b)))
    BINARY(I32_ROTR, rotr32(U32(a), U32(b)))

    UNARY(I64_CLZ, a ? (uint64_t)__builtin_clzll(a) : 64u)
    UNARY(I64_CTZ, a ? (uint64_t)__builtin_ctzll(a) : 64u)
    UNARY(I64_POPCNT, (uint64_t)__builtin_popcountll(a))
    BINARY(I64_ADD, a + b)
    BINARY(I64_SUB, a - b)
    BINARY(I64_MUL, a * b)
    DIVIDE(I64_DIV_S, int64_t, S64,
           CHECK_ZERO; if (a == INT64_MIN && b == -1) TRAP(WASM_TRAP_INTEGER_OVERFLOW),
           (uint64_t)(a / b))
    DIVIDE(I64_DIV_U, uint64_t, (uint64_t), CHECK_ZERO, a / b)
    DIVIDE(I64_REM_S, int64_t, S64, CHECK_ZERO, b == -1 ? 0 : (uint64_t)(a % b))
    DIVIDE(I64_REM_U, uint64_t, (uint64_t), CHECK_ZERO, a % b)
    BINARY(I64_AND, a & b)
    BINARY(I64_OR, a | b)
    BINARY(I64_XOR, a ^ b)
    BINARY(I64_SHL, a << (b & 63))
    BINARY(I64_SHR_S, (uint64_t)(S64(a) >> (b & 63)))
    BINARY(I64_SHR_U, a >> (b & 63))
    BINARY(I64_ROTL, rotl64(a, b))
    BINARY(I64_ROTR, rotr64(a, b))

    UNARY(F32_ABS, U32(a) & 0x7fffffffu)
    UNARY(F32_NEG, U32(a) ^ 0x80000000u)
    UNARY(F32_CEIL, f32_round(a, ceilf))
    UNARY(F32_FLOOR, f32_round(a, floorf))
    UNARY(F32_TRUNC, f32_round(a, truncf))
    UNARY(F32_NEAREST, f32_round(a, nearbyintf))
    UNARY(F32_SQRT, slot_of_f32(sqrtf(F32(a))))
    BINARY(F32_ADD, slot_of_f32(F32(a) + F32(b)))
    BINARY(F32_SUB, slot_of_f32(F32(a) - F32(b)))
    BINARY(F32_MUL, slot_of_f32(F32(a) * F32(b)))
    BINARY(F32_DIV, slot_of_f32(F32(a) / F32(b)))
    BINARY(F32_MIN, f32_min(a, b))
    BINARY(F32_MAX, f32_max(a, b))
    BINARY(F32_COPYSIGN, (U32(a) & 0x7fffffffu) | (U32(b) & 0x80000000u))
    UNARY(F64_ABS, a & 0x7fffffffffffffffu)
    UNARY(F64_NEG, a ^ 0x8000000000000000u)
    UNARY(F64_CEIL, f64_round(a, ceil))
    UNARY(F64_FLOOR, f64_round(a, floor))
    UNARY(F64_TRUNC, f64_round(a, trunc))
    UNARY(F64_NEAREST, f64_round(a, nearbyint))
    UNARY(F64_SQRT, slot_of_f64(sqrt(F64(a))))
    BINARY(F64_ADD, slot_of_f64(F64(a) + F64(b)))
    BINARY(F64_SUB, slot_of_f64(F64(a) - F64(b)))
    BINARY(F64_MUL, slot_of_f64(F64(a) * F64(b)))
    BINARY(F64_DIV, slot_of_f64(F64(a) / F64(b)))
    BINARY(F64_MIN, f64_min(a, b))
    BINARY(F64_MAX, f64_max(a, b))
    BINARY(F64_COPYSIGN, (a & 0x7fffffffffffffffu) | (b & 0x8000000000000000u))

    UNARY(I32_WRAP_I64, U32(a))
#define TRUNC(name, ftype, getter, lower_ok, upper_ok, result)                                  \
    L_##name: {                                                                                 \
        ftype x = getter(SLOT_A(1));                                                            \
        if (isnan(x))                                                                           \
            TRAP(WASM_TRAP_INVALID_CONVERSION);                                                 \
        if (!((lower_ok) && (upper_ok)))                                                        \
            TRAP(WASM_TRAP_INTEGER_OVERFLOW);                                                   \
        SLOT_B(1) = (result);                                                                   \
        NEXT(2);                                                                                \
    }
    TRUNC(I32_TRUNC_F32_S, float, F32, x >= -2147483648.0f, x < 2147483648.0f,
          U32((int32_t)x))
    TRUNC(I32_TRUNC_F32_U, float, F32, x > -1.0f, x < 4294967296.0f, (uint32_t)x)
    TRUNC(I32_TRUNC_F64_S, double, F64, x > -2147483649.0, x < 2147483648.0, U32((int32_t)x))
    TRUNC(I32_TRUNC_F64_U, double, F64, x > -1.0, x < 4294967296.0, (uint32_t)x)
    UNARY(I64_EXTEND_I32_S, (uint64_t)(int64_t)S32(a))
    UNARY(I64_EXTEND_I32_U, U32(a))
    TRUNC(I64_TRUNC_F32_S, float, F32, x >= -9223372036854775808.0f,
          x < 9223372036854775808.0f, (uint64_t)(int64_t)x)
    TRUNC(I64_TRUNC_F32_U, float, F32, x > -1.0f, x < 18446744073709551616.0f, (uint64_t)x)
    TRUNC(I64_TRUNC_F64_S, double, F64, x >= -9223372036854775808.0,
          x < 9223372036854775808.0, (uint64_t)(int64_t)x)
    TRUNC(I64_TRUNC_F64_U, double, F64, x > -1.0, x < 18446744073709551616.0, (uint64_t)x)
    UNARY(F32_CONVERT_I32_S, slot_of_f32((float)S32(a)))
    UNARY(F32_CONVERT_I32_U, slot_of_f32((float)U32(a)))
    UNARY(F32_CONVERT_I64_S, slot_of_f32((float)S64(a)))
    UNARY(F32_CONVERT_I64_U, slot_of_f32((float)a))
    UNARY(F32_DEMOTE_F64, slot_of_f32((float)F64(a)))
    UNARY(F64_CONVERT_I32_S, slot_of_f64((double)S32(a)))
    UNARY(F64_CONVERT_I32_U, slot_of_f64((double)U32(a)))
    UNARY(F64_CONVERT_I64_S, slot_of_f64((double)S64(a)))
    UNARY(F64_CONVERT_I64_U, slot_of_f64((double)a))
    UNARY(F64_PROMOTE_F32, slot_of_f64((double)F32(a)))
    /* Reinterpretations are not emitted (a slot keeps the bits); the
     * handlers exist so the table is complete. */
    UNARY(I32_REINTERPRET_F32, U32(a))
    UNARY(I64_REINTERPRET_F64, a)
    UNARY(F32_REINTERPRET_I32, U32(a))
    UNARY(F64_REINTERPRET_I64, a)
    UNARY(I32_EXTEND8_S, U32((int32_t)(int8_t)(uint8_t)a))
    UNARY(I32_EXTEND16_S, U32((int32_t)(int16_t)(uint16_t)a))
    UNARY(I64_EXTEND8_S, (uint64_t)(int64_t)(int8_t)(uint8_t)a)
    UNARY(I64_EXTEND16_S, (uint64_t)(int64_t)(int16_t)(uint16_t)a)
    UNARY(I64_EXTEND32_S, (uint64_t)(int64_t)(int32_t)(uint32_t)a)
    UNARY(I32_TRUNC_SAT_F32_S, sat_i32_s(F32(a)))
    UNARY(I32_TRUNC_SAT_F32_U, sat_i32_u(F32(a)))
    UNARY(I32_TRUNC_SAT_F64_S, sat_i32_s(F64(a)))
    UNARY(I32_TRUNC_SAT_F64_U, sat_i32_u(F64(a)))
    UNARY(I64_TRUNC_SAT_F32_S, sat_i64_s(F32(a)))
    UNARY(I64_TRUNC_SAT_F32_U, sat_i64_u(F32(a)))
    UNARY(I64_TRUNC_SAT_F64_S, sat_i64_s(F64(a)))
    UNARY(I64_TRUNC_SAT_F64_U, sat_i64_u(F64(a)))

    /* ---- comparisons fused with br_if / if ---- */
#define FUSED(name, expr)                                                                       \
    L_BR_IF_##name: {                                                                           \
        uint64_t a = SLOT_A(1), b = SLOT_B(1);                                                  \
        (void)b;                                                                                \
        if (expr)                                                                               \
            JUMP_TO(pc[2]);                                                                     \
        NEXT(3);                                                                                \
    }                                                                                           \
    L_BR_IF_##name##_I: {                                                                       \
        uint64_t a = SLOT_A(1), b = pc[1].pair.b;                                               \
        (void)b;                                                                                \
        if (expr)                                                                               \
            JUMP_TO(pc[2]);                                                                     \
        NEXT(3);                                                                                \
    }                                                                                           \
    L_BR_UNLESS_##name: {                                                                       \
        uint64_t a = SLOT_A(1), b = SLOT_B(1);                                                  \
        (void)b;                                                                                \
        if (!(expr))                                                                            \
            JUMP_TO(pc[2]);                                                                     \
        NEXT(3);                                                                                \
    }                                                                                           \
    L_BR_UNLESS_##name##_I: {                                                                   \
        uint64_t a = SLOT_A(1), b = pc[1].pair.b;                                               \
        (void)b;                                                                                \
        if (!(expr))                                                                            \
            JUMP_TO(pc[2]);                                                                     \
        NEXT(3);                                                                                \
    }
    FUSED(I32_EQZ, U32(a) == 0)
    FUSED(I32_EQ, U32(a) == U32(b))
    FUSED(I32_NE, U32(a) != U32(b))
    FUSED(I32_LT_S, S32(a) < S32(b))
    FUSED(I32_LT_U, U32(a) < U32(b))
    FUSED(I32_GT_S, S32(a) > S32(b))
    FUSED(I32_GT_U, U32(a) > U32(b))
    FUSED(I32_LE_S, S32(a) <= S32(b))
    FUSED(I32_LE_U, U32(a) <= U32(b))
    FUSED(I32_GE_S, S32(a) >= S32(b))
    FUSED(I32_GE_U, U32(a) >= U32(b))

done:
    fuel_settle(s, &fuel);
    return 0;

trapped:
    wasm_trap_set(trap, kind, wasm_trap_message(kind));
trapped_keep_message:
    fuel_settle(s, &fuel);
    locate_trap(trap, inst, fn, pc);
    s->depth = entry_depth;
    s->stack_used = entry_stack_used;
    return -1;

#undef NEXT
#undef JUMP_TO
#undef TRAP
#undef LOAD_MEMORY
#undef SLOT_A
#undef SLOT_B
#undef SLOT
#undef BULK_CHARGE
#undef CHECK_ZERO
#undef DIVIDE
#undef FUSED
#undef EFFECTIVE
#undef LOAD_OP
#undef STORE_OP
#undef UNARY
#undef BINARY
#undef TRUNC
}

const void *const *wasm_exec_handlers(void)
{
    const void *const *handlers = NULL;
    interpret(NULL, NULL, NULL, NULL, NULL, &handlers);
    return handlers;
}

static int exec_call(wasm_store *s, wasm_func *f, wasm_trap *trap)
{
    uint64_t *base = s->stack + s->stack_used;
    if (!f->code) {
        uint32_t n = f->type.param_count > f->type.result_count ? f->type.param_count
                                                                  : f->type.result_count;
        if (s->stack_used + n > s->limits.max_stack_values) {
            wasm_trap_set(trap, WASM_TRAP_CALL_STACK_EXHAUSTED,
                          wasm_trap_message(WASM_TRAP_CALL_STACK_EXHAUSTED));
            return -1;
        }
        return call_host(f, NULL, base, trap);
    }
    return interpret(s, f->code, f->inst, base, trap, NULL);
}

int wasm_exec_call(wasm_store *s, wasm_func *f, wasm_trap *trap)
{
    /* A host function calling back into wasm nests interpret() in C; bound
     * the nesting before it can exhaust the C stack. */
    if (s->activations >= WASM_MAX_ACTIVATIONS) {
        wasm_trap_set(trap, WASM_TRAP_CALL_STACK_EXHAUSTED,
                      wasm_trap_message(WASM_TRAP_CALL_STACK_EXHAUSTED));
        return -1;
    }
    s->activations++;
    int rc = exec_call(s, f, trap);
    s->activations--;
    return rc;
}
