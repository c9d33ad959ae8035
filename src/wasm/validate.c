/* Validating a decoded module: the typing rules of the spec ("invalid").
 *
 * Module-level rules (indices, limits, constant expressions, exports, start)
 * come first, then every function body is checked with the algorithm of the
 * spec's validation appendix: an operand stack of value types, where an
 * unknown type stands for anything after an unconditional branch, and a
 * control stack of the blocks entered, each with its label types and the
 * operand stack height at entry. Bodies were already decoded once by
 * decode.c, so a read error here cannot happen; it is still handled.
 *
 * The operand and control stacks are bounded (implementation limits below)
 * so a hostile body cannot make validation use memory out of proportion. */
#include <stdlib.h>
#include <string.h>

#include "wasm/module.h"

#define VALIDATE_MAX_OPERANDS (1u << 20)
#define VALIDATE_MAX_DEPTH 100000u

#define UNKNOWN 0 /* an operand of any type (unreachable code) */

typedef struct ctrl_frame {
    uint32_t opcode; /* 0x02 block, 0x03 loop, 0x04 if, 0x05 else */
    uint32_t height;
    bool unreachable;
    uint32_t param_count, result_count;
    const wasm_valtype *params, *results;
} ctrl_frame;

typedef struct validator {
    const wasm_module_def *def;
    cx_error *err;
    uint32_t func_index;
    size_t offset; /* of the instruction being checked */
    uint8_t *vals;
    uint32_t val_count, val_cap;
    ctrl_frame *ctrls;
    uint32_t ctrl_count, ctrl_cap;
    wasm_valtype *locals;
    uint32_t local_count;
    wasm_valtype single[8]; /* storage for one-result block types, by value type */
} validator;

/* ---- errors ------------------------------------------------------------- */

static int invalid(validator *v, const char *what)
{
    return cx_error_set(v->err, CX_EINVAL, "%s (function %u, offset %zu)", what, v->func_index,
                        v->offset);
}

static int invalid_at(cx_error *err, const char *what, const char *where, uint32_t index)
{
    return cx_error_set(err, CX_EINVAL, "%s (%s %u)", what, where, index);
}

/* ---- operand and control stacks ------------------------------------------ */

static int push(validator *v, uint8_t type)
{
    if (v->val_count == v->val_cap) {
        if (v->val_cap >= VALIDATE_MAX_OPERANDS)
            return invalid(v, "operand stack too deep (implementation limit)");
        uint32_t cap = v->val_cap ? v->val_cap * 2 : 64;
        uint8_t *p = realloc(v->vals, cap);
        if (!p)
            return cx_error_set(v->err, CX_ENOMEM, "out of memory validating");
        v->vals = p;
        v->val_cap = cap;
    }
    v->vals[v->val_count++] = type;
    return 0;
}

static int pop(validator *v, uint8_t *out)
{
    const ctrl_frame *f = &v->ctrls[v->ctrl_count - 1];
    if (v->val_count == f->height) {
        if (f->unreachable) {
            *out = UNKNOWN;
            return 0;
        }
        return invalid(v, "type mismatch");
    }
    *out = v->vals[--v->val_count];
    return 0;
}

static int pop_expect(validator *v, uint8_t expect, uint8_t *out)
{
    uint8_t actual = 0;
    int rc = pop(v, &actual);
    if (rc)
        return rc;
    if (actual != expect && actual != UNKNOWN && expect != UNKNOWN)
        return invalid(v, "type mismatch");
    if (out)
        *out = actual == UNKNOWN ? expect : actual;
    return 0;
}

static int pop_type(validator *v, uint8_t expect)
{
    return pop_expect(v, expect, NULL);
}

static int pop_vals(validator *v, const wasm_valtype *types, uint32_t n)
{
    for (uint32_t i = n; i-- > 0;) {
        int rc = pop_type(v, (uint8_t)types[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int push_vals(validator *v, const wasm_valtype *types, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        int rc = push(v, (uint8_t)types[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int push_ctrl(validator *v, uint32_t opcode, const wasm_valtype *params,
                     uint32_t param_count, const wasm_valtype *results, uint32_t result_count)
{
    if (v->ctrl_count == v->ctrl_cap) {
        if (v->ctrl_cap >= VALIDATE_MAX_DEPTH)
            return invalid(v, "blocks nested too deep (implementation limit)");
        uint32_t cap = v->ctrl_cap ? v->ctrl_cap * 2 : 16;
        ctrl_frame *p = realloc(v->ctrls, cap * sizeof *p);
        if (!p)
            return cx_error_set(v->err, CX_ENOMEM, "out of memory validating");
        v->ctrls = p;
        v->ctrl_cap = cap;
    }
    v->ctrls[v->ctrl_count++] = (ctrl_frame){
        .opcode = opcode,
        .height = v->val_count,
        .param_count = param_count,
        .result_count = result_count,
        .params = params,
        .results = results,
    };
    return push_vals(v, params, param_count);
}

static int pop_ctrl(validator *v, ctrl_frame *out)
{
    const ctrl_frame *f = &v->ctrls[v->ctrl_count - 1];
    int rc = pop_vals(v, f->results, f->result_count);
    if (rc)
        return rc;
    if (v->val_count != f->height)
        return invalid(v, "type mismatch");
    *out = *f;
    v->ctrl_count--;
    return 0;
}

static void label_types(const ctrl_frame *f, const wasm_valtype **types, uint32_t *n)
{
    if (f->opcode == 0x03) {
        *types = f->params;
        *n = f->param_count;
    } else {
        *types = f->results;
        *n = f->result_count;
    }
}

static void set_unreachable(validator *v)
{
    ctrl_frame *f = &v->ctrls[v->ctrl_count - 1];
    v->val_count = f->height;
    f->unreachable = true;
}

/* ---- types of instructions ----------------------------------------------- */

static bool is_ref(uint8_t t)
{
    return t == WASM_FUNCREF || t == WASM_EXTERNREF;
}

static const wasm_valtype *single_type(validator *v, wasm_valtype t)
{
    static const wasm_valtype order[] = {WASM_I32, WASM_I64, WASM_F32, WASM_F64,
                                         WASM_V128, WASM_FUNCREF, WASM_EXTERNREF};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (order[i] == t) {
            v->single[i] = t;
            return &v->single[i];
        }
    return NULL;
}

static int block_signature(validator *v, int64_t block_type, const wasm_valtype **params,
                           uint32_t *param_count, const wasm_valtype **results,
                           uint32_t *result_count)
{
    *params = *results = NULL;
    *param_count = *result_count = 0;
    if (block_type == WASM_BLOCKTYPE_EMPTY)
        return 0;
    if (block_type < 0) {
        *results = single_type(v, (wasm_valtype)(block_type + 0x80));
        *result_count = 1;
        return 0;
    }
    if (block_type >= v->def->type_count)
        return invalid(v, "unknown type");
    const wasm_functype_def *t = &v->def->types[block_type];
    *params = t->types;
    *param_count = t->param_count;
    *results = t->types + t->param_count;
    *result_count = t->result_count;
    return 0;
}

/* Operands and result of the numeric instructions; 0 when `op` is not one. */
static int numeric_signature(uint32_t op, uint8_t *a, uint8_t *b, uint8_t *r)
{
    const uint8_t I32 = WASM_I32, I64 = WASM_I64, F32 = WASM_F32, F64 = WASM_F64;
    static const uint8_t conversions[][2] = {
        /* 0xa7 .. 0xbf: operand, result */
        {WASM_I64, WASM_I32}, {WASM_F32, WASM_I32}, {WASM_F32, WASM_I32}, {WASM_F64, WASM_I32},
        {WASM_F64, WASM_I32}, {WASM_I32, WASM_I64}, {WASM_I32, WASM_I64}, {WASM_F32, WASM_I64},
        {WASM_F32, WASM_I64}, {WASM_F64, WASM_I64}, {WASM_F64, WASM_I64}, {WASM_I32, WASM_F32},
        {WASM_I32, WASM_F32}, {WASM_I64, WASM_F32}, {WASM_I64, WASM_F32}, {WASM_F64, WASM_F32},
        {WASM_I32, WASM_F64}, {WASM_I32, WASM_F64}, {WASM_I64, WASM_F64}, {WASM_I64, WASM_F64},
        {WASM_F32, WASM_F64}, {WASM_F32, WASM_I32}, {WASM_F64, WASM_I64}, {WASM_I32, WASM_F32},
        {WASM_I64, WASM_F64},
    };
    static const uint8_t saturating[][2] = {
        {WASM_F32, WASM_I32}, {WASM_F32, WASM_I32}, {WASM_F64, WASM_I32}, {WASM_F64, WASM_I32},
        {WASM_F32, WASM_I64}, {WASM_F32, WASM_I64}, {WASM_F64, WASM_I64}, {WASM_F64, WASM_I64},
    };
#define UN(t, res) (*a = (t), *r = (res), 1)
#define BIN(t, res) (*a = (t), *b = (t), *r = (res), 2)
    if (op == 0x45) return UN(I32, I32);
    if (op >= 0x46 && op <= 0x4f) return BIN(I32, I32);
    if (op == 0x50) return UN(I64, I32);
    if (op >= 0x51 && op <= 0x5a) return BIN(I64, I32);
    if (op >= 0x5b && op <= 0x60) return BIN(F32, I32);
    if (op >= 0x61 && op <= 0x66) return BIN(F64, I32);
    if (op >= 0x67 && op <= 0x69) return UN(I32, I32);
    if (op >= 0x6a && op <= 0x78) return BIN(I32, I32);
    if (op >= 0x79 && op <= 0x7b) return UN(I64, I64);
    if (op >= 0x7c && op <= 0x8a) return BIN(I64, I64);
    if (op >= 0x8b && op <= 0x91) return UN(F32, F32);
    if (op >= 0x92 && op <= 0x98) return BIN(F32, F32);
    if (op >= 0x99 && op <= 0x9f) return UN(F64, F64);
    if (op >= 0xa0 && op <= 0xa6) return BIN(F64, F64);
    if (op >= 0xa7 && op <= 0xbf) return UN(conversions[op - 0xa7][0], conversions[op - 0xa7][1]);
    if (op >= 0xc0 && op <= 0xc1) return UN(I32, I32);
    if (op >= 0xc2 && op <= 0xc4) return UN(I64, I64);
    if (op >= 0xfc00 && op <= 0xfc07)
        return UN(saturating[op - 0xfc00][0], saturating[op - 0xfc00][1]);
#undef UN
#undef BIN
    return 0;
}

/* Loads (0x28..0x35) and stores (0x36..0x3e): value type and natural
 * alignment (log2). */
static void memory_access(uint32_t op, uint8_t *type, uint32_t *natural)
{
    static const struct {
        uint8_t type, natural;
    } table[] = {
        {WASM_I32, 2}, {WASM_I64, 3}, {WASM_F32, 2}, {WASM_F64, 3}, {WASM_I32, 0},
        {WASM_I32, 0}, {WASM_I32, 1}, {WASM_I32, 1}, {WASM_I64, 0}, {WASM_I64, 0},
        {WASM_I64, 1}, {WASM_I64, 1}, {WASM_I64, 2}, {WASM_I64, 2}, /* loads */
        {WASM_I32, 2}, {WASM_I64, 3}, {WASM_F32, 2}, {WASM_F64, 3}, {WASM_I32, 0},
        {WASM_I32, 1}, {WASM_I64, 0}, {WASM_I64, 1}, {WASM_I64, 2}, /* stores */
    };
    *type = table[op - 0x28].type;
    *natural = table[op - 0x28].natural;
}

/* ---- instructions ------------------------------------------------------- */

static int check_memory(validator *v)
{
    return v->def->memory_count > 0 ? 0 : invalid(v, "unknown memory 0");
}

static int check_table(validator *v, uint32_t index)
{
    return index < v->def->table_count ? 0 : invalid(v, "unknown table");
}

static int check_elem(validator *v, uint32_t index)
{
    return index < v->def->elem_count ? 0 : invalid(v, "unknown elem segment");
}

static int check_data(validator *v, uint32_t index)
{
    /* The data count section (required by the decoder) gives the number. */
    return index < v->def->data_count_declared ? 0 : invalid(v, "unknown data segment");
}

static int check_branch(validator *v, uint32_t label, const ctrl_frame **out)
{
    if (label >= v->ctrl_count)
        return invalid(v, "unknown label");
    *out = &v->ctrls[v->ctrl_count - 1 - label];
    return 0;
}

static int check_call(validator *v, const wasm_functype_def *t)
{
    int rc = pop_vals(v, t->types, t->param_count);
    return rc ? rc : push_vals(v, t->types + t->param_count, t->result_count);
}

static int check_br_table(validator *v, const wasm_instr *in)
{
    int rc = pop_type(v, WASM_I32);
    if (rc)
        return rc;
    const ctrl_frame *def_frame = NULL;
    if ((rc = check_branch(v, in->index, &def_frame)))
        return rc;
    const wasm_valtype *def_types;
    uint32_t arity;
    label_types(def_frame, &def_types, &arity);
    wasm_reader r = {v->def->bytes, in->labels_offset, v->def->size};
    uint8_t *popped = malloc(arity + 1);
    if (!popped)
        return cx_error_set(v->err, CX_ENOMEM, "out of memory validating");
    for (uint32_t i = 0; i < in->label_count && rc == 0; i++) {
        uint32_t label;
        const ctrl_frame *f = NULL;
        if ((rc = wasm_read_u32(&r, &label, v->err)) || (rc = check_branch(v, label, &f)))
            break;
        const wasm_valtype *types;
        uint32_t n;
        label_types(f, &types, &n);
        if (n != arity) {
            rc = invalid(v, "type mismatch (br_table labels of different arity)");
            break;
        }
        /* WebAssembly 1.0 wants the very same label types (2.0 only checks
         * each label against the operands, which matters after unreachable). */
        if (!v->def->features.reference_types &&
            (n && memcmp(types, def_types, n * sizeof *types) != 0)) {
            rc = invalid(v, "type mismatch (br_table labels of different types)");
            break;
        }
        /* Pop the label's types and push back what was there, so unknown
         * operands stay unknown for the next label. */
        for (uint32_t k = n; k-- > 0 && rc == 0;) {
            uint8_t actual = 0;
            rc = pop(v, &actual);
            if (rc == 0 && actual != UNKNOWN && actual != types[k])
                rc = invalid(v, "type mismatch");
            popped[k] = actual;
        }
        for (uint32_t k = 0; k < n && rc == 0; k++)
            rc = push(v, popped[k]);
    }
    free(popped);
    if (rc)
        return rc;
    if ((rc = pop_vals(v, def_types, arity)))
        return rc;
    set_unreachable(v);
    return 0;
}

static int check_select(validator *v, const wasm_instr *in)
{
    int rc = pop_type(v, WASM_I32);
    if (rc)
        return rc;
    if (in->opcode == 0x1c) {
        if (in->type_count != 1)
            return invalid(v, "invalid result arity");
        if ((rc = pop_type(v, in->type)) || (rc = pop_type(v, in->type)))
            return rc;
        return push(v, in->type);
    }
    uint8_t t1, t2;
    if ((rc = pop(v, &t1)) || (rc = pop(v, &t2)))
        return rc;
    if (is_ref(t1) || is_ref(t2))
        return invalid(v, "type mismatch (select of references needs a type)");
    if (t1 != t2 && t1 != UNKNOWN && t2 != UNKNOWN)
        return invalid(v, "type mismatch");
    return push(v, t1 == UNKNOWN ? t2 : t1);
}

static int check_variable(validator *v, const wasm_instr *in)
{
    const wasm_module_def *def = v->def;
    int rc;
    switch (in->opcode) {
    case 0x20:
    case 0x21:
    case 0x22: {
        if (in->index >= v->local_count)
            return invalid(v, "unknown local");
        uint8_t t = (uint8_t)v->locals[in->index];
        if (in->opcode == 0x20)
            return push(v, t);
        if ((rc = pop_type(v, t)))
            return rc;
        return in->opcode == 0x22 ? push(v, t) : 0;
    }
    case 0x23:
        if (in->index >= def->global_count)
            return invalid(v, "unknown global");
        return push(v, (uint8_t)def->globals[in->index].type);
    default: /* 0x24 global.set */
        if (in->index >= def->global_count)
            return invalid(v, "unknown global");
        if (!def->globals[in->index].mutable_)
            return invalid(v, "global is immutable");
        return pop_type(v, (uint8_t)def->globals[in->index].type);
    }
}

static int pop_i32s(validator *v, int n)
{
    for (int i = 0; i < n; i++) {
        int rc = pop_type(v, WASM_I32);
        if (rc)
            return rc;
    }
    return 0;
}

static int check_table_op(validator *v, const wasm_instr *in)
{
    const wasm_module_def *def = v->def;
    int rc;
    switch (in->opcode) {
    case 0x25: /* table.get */
        if ((rc = check_table(v, in->index)) || (rc = pop_type(v, WASM_I32)))
            return rc;
        return push(v, (uint8_t)def->tables[in->index].elem_type);
    case 0x26: /* table.set */
        if ((rc = check_table(v, in->index)) ||
            (rc = pop_type(v, (uint8_t)def->tables[in->index].elem_type)))
            return rc;
        return pop_type(v, WASM_I32);
    case 0xfc0c: /* table.init elem table */
        if ((rc = check_table(v, in->index2)) || (rc = check_elem(v, in->index)))
            return rc;
        if (def->tables[in->index2].elem_type != def->elems[in->index].type)
            return invalid(v, "type mismatch");
        return pop_i32s(v, 3);
    case 0xfc0d: /* elem.drop */
        return check_elem(v, in->index);
    case 0xfc0e: /* table.copy dst src */
        if ((rc = check_table(v, in->index)) || (rc = check_table(v, in->index2)))
            return rc;
        if (def->tables[in->index].elem_type != def->tables[in->index2].elem_type)
            return invalid(v, "type mismatch");
        return pop_i32s(v, 3);
    case 0xfc0f: /* table.grow */
        if ((rc = check_table(v, in->index)) || (rc = pop_type(v, WASM_I32)) ||
            (rc = pop_type(v, (uint8_t)def->tables[in->index].elem_type)))
            return rc;
        return push(v, WASM_I32);
    case 0xfc10: /* table.size */
        if ((rc = check_table(v, in->index)))
            return rc;
        return push(v, WASM_I32);
    default: /* 0xfc11 table.fill */
        if ((rc = check_table(v, in->index)) || (rc = pop_type(v, WASM_I32)) ||
            (rc = pop_type(v, (uint8_t)def->tables[in->index].elem_type)))
            return rc;
        return pop_type(v, WASM_I32);
    }
}

static int check_memory_op(validator *v, const wasm_instr *in)
{
    int rc = check_memory(v);
    if (rc)
        return rc;
    uint32_t op = in->opcode;
    if (op >= 0x28 && op <= 0x3e) {
        uint8_t type;
        uint32_t natural;
        memory_access(op, &type, &natural);
        if (in->align > natural)
            return invalid(v, "alignment must not be larger than natural");
        if (op <= 0x35) {
            if ((rc = pop_type(v, WASM_I32)))
                return rc;
            return push(v, type);
        }
        if ((rc = pop_type(v, type)))
            return rc;
        return pop_type(v, WASM_I32);
    }
    switch (op) {
    case 0x3f: /* memory.size */
        return push(v, WASM_I32);
    case 0x40: /* memory.grow */
        if ((rc = pop_type(v, WASM_I32)))
            return rc;
        return push(v, WASM_I32);
    case 0xfc08: /* memory.init */
        if ((rc = check_data(v, in->index)))
            return rc;
        return pop_i32s(v, 3);
    default: /* memory.copy, memory.fill */
        return pop_i32s(v, 3);
    }
}

static int check_control(validator *v, const wasm_instr *in)
{
    const wasm_module_def *def = v->def;
    const wasm_valtype *params, *results;
    uint32_t np, nr;
    const ctrl_frame *target = NULL;
    ctrl_frame f;
    int rc;
    switch (in->opcode) {
    case 0x00: /* unreachable */
        set_unreachable(v);
        return 0;
    case 0x01:
        return 0;
    case 0x02:
    case 0x03:
    case 0x04:
        if ((rc = block_signature(v, in->block_type, &params, &np, &results, &nr)))
            return rc;
        if (in->opcode == 0x04 && (rc = pop_type(v, WASM_I32)))
            return rc;
        if ((rc = pop_vals(v, params, np)))
            return rc;
        return push_ctrl(v, in->opcode, params, np, results, nr);
    case 0x05: /* else */
        if (v->ctrls[v->ctrl_count - 1].opcode != 0x04)
            return invalid(v, "else without if");
        if ((rc = pop_ctrl(v, &f)))
            return rc;
        return push_ctrl(v, 0x05, f.params, f.param_count, f.results, f.result_count);
    case 0x0b: /* end */
        if ((rc = pop_ctrl(v, &f)))
            return rc;
        if (f.opcode == 0x04) {
            /* An if without else must leave its parameters as its results. */
            bool same = f.param_count == f.result_count;
            for (uint32_t i = 0; same && i < f.param_count; i++)
                same = f.params[i] == f.results[i];
            if (!same)
                return invalid(v, "type mismatch (if without else)");
        }
        return push_vals(v, f.results, f.result_count);
    case 0x0c: /* br */
    case 0x0d: /* br_if */
        if ((rc = check_branch(v, in->index, &target)))
            return rc;
        label_types(target, &results, &nr);
        if (in->opcode == 0x0c) {
            if ((rc = pop_vals(v, results, nr)))
                return rc;
            set_unreachable(v);
            return 0;
        }
        if ((rc = pop_type(v, WASM_I32)) || (rc = pop_vals(v, results, nr)))
            return rc;
        return push_vals(v, results, nr);
    case 0x0e:
        return check_br_table(v, in);
    case 0x0f: { /* return */
        const wasm_functype_def *t = wasm_func_type_def(def, v->func_index);
        if ((rc = pop_vals(v, t->types + t->param_count, t->result_count)))
            return rc;
        set_unreachable(v);
        return 0;
    }
    case 0x10:
        if (in->index >= def->func_count)
            return invalid(v, "unknown function");
        return check_call(v, wasm_func_type_def(def, in->index));
    default: /* 0x11 call_indirect */
        if ((rc = check_table(v, in->index2)))
            return rc;
        if (def->tables[in->index2].elem_type != WASM_FUNCREF)
            return invalid(v, "type mismatch (call_indirect needs a funcref table)");
        if (in->index >= def->type_count)
            return invalid(v, "unknown type");
        if ((rc = pop_type(v, WASM_I32)))
            return rc;
        return check_call(v, &def->types[in->index]);
    }
}

static int check_instr(validator *v, const wasm_instr *in)
{
    uint32_t op = in->opcode;
    uint8_t a, b, r;
    int operands = numeric_signature(op, &a, &b, &r);
    int rc;
    if (operands) {
        if (operands == 2 && (rc = pop_type(v, b)))
            return rc;
        if ((rc = pop_type(v, a)))
            return rc;
        return push(v, r);
    }
    if (op <= 0x11)
        return check_control(v, in);
    if (op == 0x1a) {
        uint8_t t;
        return pop(v, &t);
    }
    if (op == 0x1b || op == 0x1c)
        return check_select(v, in);
    if (op >= 0x20 && op <= 0x24)
        return check_variable(v, in);
    if (op == 0x25 || op == 0x26 || (op >= 0xfc0c && op <= 0xfc11))
        return check_table_op(v, in);
    if ((op >= 0x28 && op <= 0x40) || op == 0xfc08 || op == 0xfc0a || op == 0xfc0b)
        return check_memory_op(v, in);
    switch (op) {
    case 0x41: return push(v, WASM_I32);
    case 0x42: return push(v, WASM_I64);
    case 0x43: return push(v, WASM_F32);
    case 0x44: return push(v, WASM_F64);
    case 0xd0: return push(v, (uint8_t)in->type);
    case 0xd1: {
        uint8_t t;
        if ((rc = pop(v, &t)))
            return rc;
        if (t != UNKNOWN && !is_ref(t))
            return invalid(v, "type mismatch");
        return push(v, WASM_I32);
    }
    case 0xd2:
        if (in->index >= v->def->func_count)
            return invalid(v, "unknown function");
        if (!v->def->func_declared[in->index])
            return invalid(v, "undeclared function reference");
        return push(v, WASM_FUNCREF);
    case 0xfc09: /* data.drop */
        return check_data(v, in->index);
    default:
        return invalid(v, "illegal opcode");
    }
}

static int validate_function(validator *v, uint32_t index)
{
    const wasm_module_def *def = v->def;
    const wasm_func_def *fn = &def->funcs[index];
    const wasm_functype_def *t = wasm_func_type_def(def, index);
    v->func_index = index;
    v->offset = fn->code_offset;
    v->val_count = v->ctrl_count = 0;
    v->local_count = t->param_count + fn->local_count;
    free(v->locals);
    v->locals = malloc(((size_t)v->local_count + 1) * sizeof *v->locals);
    if (!v->locals)
        return cx_error_set(v->err, CX_ENOMEM, "out of memory validating");
    memcpy(v->locals, t->types, t->param_count * sizeof *v->locals);
    memcpy(v->locals + t->param_count, fn->local_types, fn->local_count * sizeof *v->locals);
    int rc = push_ctrl(v, 0x02, NULL, 0, t->types + t->param_count, t->result_count);
    if (rc)
        return rc;
    wasm_reader r = {def->bytes, fn->code_offset, fn->code_end};
    while (v->ctrl_count > 0) {
        wasm_instr in;
        if ((rc = wasm_read_instr(&r, &def->features, &in, v->err)))
            return rc;
        v->offset = in.offset;
        if ((rc = check_instr(v, &in)))
            return rc;
    }
    if (r.pos != fn->code_end)
        return cx_error_set(v->err, CX_EPARSE, "operators remaining after end of function "
                            "(function %u, offset %zu)", index, r.pos);
    return 0;
}

/* ---- constant expressions ------------------------------------------------ */

static int validate_const_expr(const wasm_module_def *def, size_t start, size_t end,
                               wasm_valtype expect, const char *where, uint32_t where_index,
                               cx_error *err)
{
    wasm_reader r = {def->bytes, start, end};
    uint8_t stack_top = UNKNOWN;
    uint32_t depth = 0;
    for (;;) {
        wasm_instr in;
        int rc = wasm_read_instr(&r, &def->features, &in, err);
        if (rc)
            return rc;
        uint8_t t;
        switch (in.opcode) {
        case 0x0b:
            if (depth != 1 || stack_top != expect)
                return invalid_at(err, "type mismatch (constant expression)", where,
                                  where_index);
            return 0;
        case 0x41: t = WASM_I32; break;
        case 0x42: t = WASM_I64; break;
        case 0x43: t = WASM_F32; break;
        case 0x44: t = WASM_F64; break;
        case 0xd0: t = (uint8_t)in.type; break;
        case 0xd2:
            if (in.index >= def->func_count)
                return invalid_at(err, "unknown function", where, where_index);
            t = WASM_FUNCREF;
            break;
        case 0x23:
            /* Only imported globals, and only immutable ones. */
            if (in.index >= def->global_import_count)
                return invalid_at(err, "unknown global", where, where_index);
            if (def->globals[in.index].mutable_)
                return invalid_at(err, "constant expression required", where, where_index);
            t = (uint8_t)def->globals[in.index].type;
            break;
        default:
            return invalid_at(err, "constant expression required", where, where_index);
        }
        stack_top = t;
        depth++;
    }
}

/* ---- the module --------------------------------------------------------- */

static int check_limits(const wasm_limits_decl *l, uint64_t bound, const char *too_large,
                        const char *where, uint32_t index, cx_error *err)
{
    if (l->min > bound || (l->has_max && l->max > bound))
        return invalid_at(err, too_large, where, index);
    if (l->has_max && l->min > l->max)
        return invalid_at(err, "size minimum must not be greater than maximum", where, index);
    return 0;
}

static int compare_exports(const void *a, const void *b)
{
    const wasm_export_def *x = *(wasm_export_def *const *)a, *y = *(wasm_export_def *const *)b;
    uint32_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

static int validate_exports(const wasm_module_def *def, cx_error *err)
{
    static const char *const unknown[] = {"unknown function", "unknown table",
                                          "unknown memory", "unknown global"};
    for (uint32_t i = 0; i < def->export_count; i++) {
        const wasm_export_def *e = &def->exports[i];
        uint32_t limit = e->kind == WASM_EXTERN_FUNC     ? def->func_count
                         : e->kind == WASM_EXTERN_TABLE  ? def->table_count
                         : e->kind == WASM_EXTERN_MEMORY ? def->memory_count
                                                         : def->global_count;
        if (e->index >= limit)
            return invalid_at(err, unknown[e->kind], "export", i);
        if (e->kind == WASM_EXTERN_GLOBAL && def->globals[e->index].mutable_ &&
            !def->features.mutable_globals)
            return invalid_at(err, "mutable globals cannot be exported", "export", i);
    }
    if (def->export_count < 2)
        return 0;
    const wasm_export_def **sorted = malloc(def->export_count * sizeof *sorted);
    if (!sorted)
        return cx_error_set(err, CX_ENOMEM, "out of memory validating");
    for (uint32_t i = 0; i < def->export_count; i++)
        sorted[i] = &def->exports[i];
    qsort(sorted, def->export_count, sizeof *sorted, compare_exports);
    int rc = 0;
    for (uint32_t i = 1; i < def->export_count && rc == 0; i++)
        if (compare_exports(&sorted[i - 1], &sorted[i]) == 0)
            rc = cx_error_set(err, CX_EINVAL, "duplicate export name \"%s\"", sorted[i]->name);
    free(sorted);
    return rc;
}

static int validate_entities(const wasm_module_def *def, cx_error *err)
{
    int rc;
    for (uint32_t i = 0; i < def->type_count; i++)
        if (def->types[i].result_count > 1 && !def->features.multi_value)
            return invalid_at(err, "invalid result arity", "type", i);
    for (uint32_t i = 0; i < def->func_count; i++)
        if (def->funcs[i].type_index >= def->type_count)
            return invalid_at(err, "unknown type", "function", i);
    for (uint32_t i = 0; i < def->global_import_count; i++)
        if (def->globals[i].mutable_ && !def->features.mutable_globals)
            return invalid_at(err, "mutable globals cannot be imported", "global", i);
    if (def->table_count > 1 && !def->features.reference_types)
        return cx_error_set(err, CX_EINVAL, "multiple tables");
    for (uint32_t i = 0; i < def->table_count; i++)
        if ((rc = check_limits(&def->tables[i].limits, UINT32_MAX,
                               "table size must be at most 2^32-1", "table", i, err)))
            return rc;
    if (def->memory_count > WASM_MAX_MEMORIES)
        return cx_error_set(err, CX_EINVAL, "multiple memories");
    for (uint32_t i = 0; i < def->memory_count; i++)
        if ((rc = check_limits(&def->memories[i], WASM_MAX_PAGES,
                               "memory size must be at most 65536 pages (4GiB)", "memory", i,
                               err)))
            return rc;
    for (uint32_t i = def->global_import_count; i < def->global_count; i++) {
        const wasm_global_def *g = &def->globals[i];
        if ((rc = validate_const_expr(def, g->init_offset, g->init_end, g->type, "global", i,
                                      err)))
            return rc;
    }
    if ((rc = validate_exports(def, err)))
        return rc;
    if (def->has_start) {
        if (def->start >= def->func_count)
            return invalid_at(err, "unknown function", "start function", def->start);
        const wasm_functype_def *t = wasm_func_type_def(def, def->start);
        if (t->param_count || t->result_count)
            return invalid_at(err, "start function must have type [] -> []", "function",
                              def->start);
    }
    for (uint32_t i = 0; i < def->elem_count; i++) {
        const wasm_elem_def *e = &def->elems[i];
        if (e->mode == WASM_SEGMENT_ACTIVE) {
            if (e->table_index >= def->table_count)
                return invalid_at(err, "unknown table", "element segment", i);
            if (def->tables[e->table_index].elem_type != e->type)
                return invalid_at(err, "type mismatch", "element segment", i);
            if ((rc = validate_const_expr(def, e->offset_expr, e->offset_end, WASM_I32,
                                          "element segment", i, err)))
                return rc;
        }
        for (uint32_t k = 0; k < e->count; k++) {
            if (e->func_indices && e->func_indices[k] >= def->func_count)
                return invalid_at(err, "unknown function", "element segment", i);
            if (e->expr_offsets &&
                (rc = validate_const_expr(def, e->expr_offsets[k], e->expr_ends[k], e->type,
                                          "element segment", i, err)))
                return rc;
        }
    }
    for (uint32_t i = 0; i < def->data_count; i++) {
        const wasm_data_def *s = &def->datas[i];
        if (s->mode != WASM_SEGMENT_ACTIVE)
            continue;
        if (s->memory_index >= def->memory_count)
            return invalid_at(err, "unknown memory", "data segment", i);
        if ((rc = validate_const_expr(def, s->offset_expr, s->offset_end, WASM_I32,
                                      "data segment", i, err)))
            return rc;
    }
    return 0;
}

int wasm_validate(const wasm_module_def *def, cx_error *err)
{
    int rc = validate_entities(def, err);
    if (rc)
        return rc;
    validator v = {.def = def, .err = err};
    for (uint32_t i = def->func_import_count; i < def->func_count && rc == 0; i++)
        rc = validate_function(&v, i);
    free(v.vals);
    free(v.ctrls);
    free(v.locals);
    return rc;
}
