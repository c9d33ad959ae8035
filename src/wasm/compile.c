/* The load-time compiler: turns each validated function body into the
 * internal code of compile.h, once per module, shared by all instances.
 *
 * One pass per body with a stack of control frames. Because the module is
 * already valid, the operand stack height at every instruction is known
 * statically, so branches become "jump to cell X, keeping the top K values
 * at height H" and the interpreter never searches for a label or tracks
 * block boundaries. Forward branches are patched when their block ends.
 * Code after an unconditional branch is unreachable: it is parsed (to find
 * the matching else/end) but nothing is emitted for it.
 *
 * Stack heights are checked here too, so a validator bug turns into a
 * compile error rather than an interpreter reading outside its frame. */
#include <stdlib.h>
#include <string.h>

#include "wasm/compile.h"

enum ctrl_kind { CTRL_FUNC, CTRL_BLOCK, CTRL_LOOP, CTRL_IF };

#define NO_CELL SIZE_MAX

typedef struct ctrl_frame {
    enum ctrl_kind kind;
    bool dead;        /* opened inside unreachable code: emits nothing */
    bool unreachable; /* the rest of this frame is unreachable */
    uint32_t height;  /* operand height at entry, parameters excluded */
    uint32_t params, results;
    size_t start;      /* loop: the header's cell */
    size_t else_fixup; /* if: the BR_UNLESS target cell until else/end */
} ctrl_frame;

typedef struct fixup {
    size_t cell;    /* a target cell waiting for its label */
    size_t frame;   /* index of the control frame it targets */
} fixup;

typedef struct compiler {
    const wasm_module_def *def;
    const void *const *handlers;
    wasm_code_func *funcs; /* all defined functions (for CALL) */
    cx_error *err;

    wasm_cell *code;
    size_t len, cap;
    wasm_code_origin *origins;
    size_t origin_count, origin_cap;
    size_t *targets; /* cells holding a target index, made pointers at the end */
    size_t target_count, target_cap;
    fixup *fixups;
    size_t fixup_count, fixup_cap;
    ctrl_frame *ctrl;
    size_t ctrl_count, ctrl_cap;

    uint32_t locals; /* params + declared locals */
    uint32_t height, max_height;
    size_t fuel_cell; /* the open block's FUEL instruction */
    uint64_t fuel_count;
    size_t instr_offset;
    bool failed;
} compiler;

static bool grow_array(void **items, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *p = realloc(*items, n * size);
    if (!p)
        return false;
    *items = p;
    *cap = n;
    return true;
}

static int fail(compiler *c, int code, const char *what)
{
    c->failed = true;
    return cx_error_set(c->err, code, "compile: %s at offset %zu", what, c->instr_offset);
}

static size_t emit_cell(compiler *c, wasm_cell cell)
{
    if (!grow_array((void **)&c->code, &c->cap, c->len + 1, sizeof *c->code)) {
        fail(c, CX_ENOMEM, "out of memory");
        return 0;
    }
    c->code[c->len] = cell;
    return c->len++;
}

static size_t emit_op(compiler *c, enum wasm_internal_op op)
{
    if (!grow_array((void **)&c->origins, &c->origin_cap, c->origin_count + 1,
                    sizeof *c->origins)) {
        fail(c, CX_ENOMEM, "out of memory");
        return 0;
    }
    c->origins[c->origin_count].cell = (uint32_t)c->len;
    c->origins[c->origin_count].offset = (uint32_t)c->instr_offset;
    c->origin_count++;
    if (op != WASM_OP_FUEL)
        c->fuel_count++;
    return emit_cell(c, (wasm_cell){.op = c->handlers[op]});
}

static size_t emit_u64(compiler *c, uint64_t v)
{
    return emit_cell(c, (wasm_cell){.u64 = v});
}

static size_t emit_pair(compiler *c, uint32_t a, uint32_t b)
{
    wasm_cell cell = {.u64 = 0};
    cell.pair.a = a;
    cell.pair.b = b;
    return emit_cell(c, cell);
}

/* A target cell holding a cell index until the end of the function. */
static size_t emit_target(compiler *c, size_t index)
{
    size_t cell = emit_u64(c, index);
    if (!grow_array((void **)&c->targets, &c->target_cap, c->target_count + 1,
                    sizeof *c->targets))
        return fail(c, CX_ENOMEM, "out of memory"), cell;
    c->targets[c->target_count++] = cell;
    return cell;
}

static void add_fixup(compiler *c, size_t cell, size_t frame)
{
    if (!grow_array((void **)&c->fixups, &c->fixup_cap, c->fixup_count + 1, sizeof *c->fixups)) {
        fail(c, CX_ENOMEM, "out of memory");
        return;
    }
    c->fixups[c->fixup_count++] = (fixup){cell, frame};
}

/* Points every pending branch to `frame` at `label`. */
static void resolve_fixups(compiler *c, size_t frame, size_t label)
{
    if (c->failed)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < c->fixup_count; i++) {
        if (c->fixups[i].frame == frame)
            c->code[c->fixups[i].cell].u64 = label;
        else
            c->fixups[kept++] = c->fixups[i];
    }
    c->fixup_count = kept;
}

static void close_block(compiler *c)
{
    if (c->fuel_cell != NO_CELL && !c->failed)
        c->code[c->fuel_cell + 1].u64 = c->fuel_count ? c->fuel_count : 1;
}

/* Starts a basic block and returns its label (the FUEL instruction). An
 * empty block just opened is reused. */
static size_t begin_block(compiler *c)
{
    if (c->fuel_cell != NO_CELL && c->fuel_cell + 2 == c->len && c->fuel_count == 0)
        return c->fuel_cell;
    close_block(c);
    size_t label = emit_op(c, WASM_OP_FUEL);
    emit_u64(c, 1);
    c->fuel_cell = label;
    c->fuel_count = 0;
    return label;
}

static bool pop(compiler *c, uint32_t n)
{
    if (c->height < n || c->height - n < c->ctrl[c->ctrl_count - 1].height) {
        fail(c, CX_EINVAL, "operand stack underflow");
        return false;
    }
    c->height -= n;
    return true;
}

static void push(compiler *c, uint32_t n)
{
    c->height += n;
    if (c->height > c->max_height)
        c->max_height = c->height;
}

static void push_ctrl(compiler *c, enum ctrl_kind kind, bool dead, uint32_t params,
                      uint32_t results)
{
    if (!grow_array((void **)&c->ctrl, &c->ctrl_cap, c->ctrl_count + 1, sizeof *c->ctrl)) {
        fail(c, CX_ENOMEM, "out of memory");
        return;
    }
    ctrl_frame *f = &c->ctrl[c->ctrl_count++];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->dead = dead;
    f->unreachable = dead;
    f->params = params;
    f->results = results;
    f->height = dead ? c->height : c->height - params;
    f->start = NO_CELL;
    f->else_fixup = NO_CELL;
}

static int read_blocktype(compiler *c, wasm_reader *r, uint32_t *params, uint32_t *results)
{
    int64_t bt;
    int rc = wasm_read_s33(r, &bt, c->err);
    if (rc < 0)
        return rc;
    if (bt == -64) {
        *params = *results = 0;
    } else if (bt < 0) {
        *params = 0;
        *results = 1;
    } else {
        if ((uint64_t)bt >= c->def->type_count)
            return fail(c, CX_EINVAL, "unknown type");
        *params = c->def->types[bt].param_count;
        *results = c->def->types[bt].result_count;
    }
    return 0;
}

/* br/br_if to the label `depth` levels out; the condition is popped. */
static void emit_branch(compiler *c, uint32_t depth, bool conditional)
{
    if (depth >= c->ctrl_count) {
        fail(c, CX_EINVAL, "unknown label");
        return;
    }
    size_t index = c->ctrl_count - 1 - depth;
    const ctrl_frame *t = &c->ctrl[index];
    uint32_t arity = t->kind == CTRL_LOOP ? t->params : t->results;
    if (c->height < arity || c->height - arity < t->height) {
        fail(c, CX_EINVAL, "operand stack underflow at branch");
        return;
    }
    if (t->kind == CTRL_FUNC && !conditional) {
        emit_op(c, WASM_OP_RETURN);
        emit_u64(c, arity);
        return;
    }
    bool drop = c->height - arity != t->height;
    enum wasm_internal_op op = conditional ? (drop ? WASM_OP_BR_IF_DROP : WASM_OP_BR_IF)
                                           : (drop ? WASM_OP_BR_DROP : WASM_OP_JUMP);
    emit_op(c, op);
    size_t cell = emit_target(c, t->kind == CTRL_LOOP ? t->start : 0);
    if (t->kind != CTRL_LOOP)
        add_fixup(c, cell, index);
    if (drop)
        emit_pair(c, arity, c->locals + t->height);
}

static int compile_br_table(compiler *c, wasm_reader *r, bool live)
{
    uint32_t count;
    int rc = wasm_read_u32(r, &count, c->err);
    if (rc < 0)
        return rc;
    if (count > WASM_MAX_BR_TABLE)
        return fail(c, CX_EINVAL, "br_table too large");
    if (live) {
        if (!pop(c, 1))
            return CX_EINVAL;
        emit_op(c, WASM_OP_BR_TABLE);
        emit_u64(c, count);
    }
    for (uint32_t i = 0; i <= count; i++) {
        uint32_t depth;
        if ((rc = wasm_read_u32(r, &depth, c->err)) < 0)
            return rc;
        if (!live)
            continue;
        if (depth >= c->ctrl_count)
            return fail(c, CX_EINVAL, "unknown label");
        size_t index = c->ctrl_count - 1 - depth;
        const ctrl_frame *t = &c->ctrl[index];
        uint32_t arity = t->kind == CTRL_LOOP ? t->params : t->results;
        if (c->height < arity || c->height - arity < t->height)
            return fail(c, CX_EINVAL, "operand stack underflow at branch");
        size_t cell;
        if (t->kind == CTRL_LOOP) {
            cell = emit_target(c, t->start);
        } else {
            cell = emit_target(c, 0);
            add_fixup(c, cell, index);
        }
        emit_pair(c, arity, c->locals + t->height);
    }
    if (live)
        c->ctrl[c->ctrl_count - 1].unreachable = true;
    return c->failed ? CX_EINVAL : 0;
}

static void set_unreachable(compiler *c)
{
    ctrl_frame *top = &c->ctrl[c->ctrl_count - 1];
    top->unreachable = true;
    c->height = top->height;
}

static int compile_else(compiler *c)
{
    ctrl_frame *top = &c->ctrl[c->ctrl_count - 1];
    if (top->kind != CTRL_IF || top->else_fixup == NO_CELL)
        return fail(c, CX_EINVAL, "else without if");
    if (top->dead)
        return 0;
    if (!top->unreachable) {
        emit_op(c, WASM_OP_JUMP);
        add_fixup(c, emit_target(c, 0), c->ctrl_count - 1);
    }
    size_t label = begin_block(c);
    if (c->failed)
        return CX_ENOMEM;
    c->code[top->else_fixup].u64 = label;
    top->else_fixup = NO_CELL;
    top->unreachable = false;
    c->height = top->height + top->params;
    return 0;
}

/* Returns 1 when the function's own frame ended. */
static int compile_end(compiler *c)
{
    ctrl_frame *top = &c->ctrl[c->ctrl_count - 1];
    if (top->dead) {
        c->ctrl_count--;
        return 0;
    }
    if (!top->unreachable && c->height != top->height + top->results)
        return fail(c, CX_EINVAL, "operand stack height mismatch at end");
    size_t frame = c->ctrl_count - 1;
    if (top->kind == CTRL_FUNC) {
        size_t label = emit_op(c, WASM_OP_RETURN);
        emit_u64(c, top->results);
        resolve_fixups(c, frame, label);
        close_block(c);
        c->ctrl_count--;
        return 1;
    }
    size_t label = begin_block(c);
    if (c->failed)
        return CX_ENOMEM;
    resolve_fixups(c, frame, label);
    if (top->else_fixup != NO_CELL)
        c->code[top->else_fixup].u64 = label;
    c->height = top->height + top->results;
    c->ctrl_count--;
    return 0;
}

static bool is_binary_numeric(uint8_t op)
{
    return (op >= 0x46 && op <= 0x4f) || (op >= 0x51 && op <= 0x66) ||
           (op >= 0x6a && op <= 0x78) || (op >= 0x7c && op <= 0x8a) ||
           (op >= 0x92 && op <= 0x98) || (op >= 0xa0 && op <= 0xa6);
}

static int read_memarg(compiler *c, wasm_reader *r, uint32_t *offset)
{
    uint32_t align;
    int rc = wasm_read_u32(r, &align, c->err);
    if (rc < 0)
        return rc;
    return wasm_read_u32(r, offset, c->err);
}

static int compile_load(compiler *c, wasm_reader *r, uint8_t op, bool live)
{
    static const enum wasm_internal_op loads[] = {
        WASM_OP_LOAD32,    WASM_OP_LOAD64,     WASM_OP_LOAD32,     WASM_OP_LOAD64,
        WASM_OP_LOAD8_S32, WASM_OP_LOAD8_U,    WASM_OP_LOAD16_S32, WASM_OP_LOAD16_U,
        WASM_OP_LOAD8_S64, WASM_OP_LOAD8_U,    WASM_OP_LOAD16_S64, WASM_OP_LOAD16_U,
        WASM_OP_LOAD32_S64, WASM_OP_LOAD32,
    };
    static const enum wasm_internal_op stores[] = {
        WASM_OP_STORE32, WASM_OP_STORE64, WASM_OP_STORE32, WASM_OP_STORE64, WASM_OP_STORE8,
        WASM_OP_STORE16, WASM_OP_STORE8,  WASM_OP_STORE16, WASM_OP_STORE32,
    };
    uint32_t offset;
    int rc = read_memarg(c, r, &offset);
    if (rc < 0 || !live)
        return rc;
    if (op <= 0x35) {
        if (!pop(c, 1))
            return CX_EINVAL;
        emit_op(c, loads[op - 0x28]);
        push(c, 1);
    } else {
        if (!pop(c, 2))
            return CX_EINVAL;
        emit_op(c, stores[op - 0x36]);
    }
    emit_u64(c, offset);
    return 0;
}

static int compile_prefixed(compiler *c, wasm_reader *r, bool live)
{
    uint32_t sub, a = 0, b = 0;
    uint8_t byte;
    int rc = wasm_read_u32(r, &sub, c->err);
    if (rc < 0)
        return rc;
    switch (sub) {
    case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7:
        if (!live)
            return 0;
        if (!pop(c, 1))
            return CX_EINVAL;
        emit_op(c, WASM_OP_I32_TRUNC_SAT_F32_S + sub);
        push(c, 1);
        return 0;
    case 8: /* memory.init data 0 */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || (rc = wasm_read_u8(r, &byte, c->err)) < 0)
            return rc;
        if (!live)
            return 0;
        if (!pop(c, 3))
            return CX_EINVAL;
        emit_op(c, WASM_OP_MEMORY_INIT);
        emit_u64(c, a);
        return 0;
    case 9: /* data.drop */
    case 13: /* elem.drop */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        emit_op(c, sub == 9 ? WASM_OP_DATA_DROP : WASM_OP_ELEM_DROP);
        emit_u64(c, a);
        return 0;
    case 10: /* memory.copy 0 0 */
        if ((rc = wasm_read_u8(r, &byte, c->err)) < 0 || (rc = wasm_read_u8(r, &byte, c->err)) < 0)
            return rc;
        if (!live)
            return 0;
        if (!pop(c, 3))
            return CX_EINVAL;
        emit_op(c, WASM_OP_MEMORY_COPY);
        return 0;
    case 11: /* memory.fill 0 */
        if ((rc = wasm_read_u8(r, &byte, c->err)) < 0 || !live)
            return rc;
        if (!pop(c, 3))
            return CX_EINVAL;
        emit_op(c, WASM_OP_MEMORY_FILL);
        return 0;
    case 12: /* table.init elem table */
    case 14: /* table.copy dst src */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || (rc = wasm_read_u32(r, &b, c->err)) < 0)
            return rc;
        if (!live)
            return 0;
        if (!pop(c, 3))
            return CX_EINVAL;
        emit_op(c, sub == 12 ? WASM_OP_TABLE_INIT : WASM_OP_TABLE_COPY);
        emit_pair(c, a, b);
        return 0;
    case 15: /* table.grow */
    case 16: /* table.size */
    case 17: /* table.fill */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        if (!pop(c, sub == 15 ? 2 : sub == 16 ? 0 : 3))
            return CX_EINVAL;
        emit_op(c, sub == 15 ? WASM_OP_TABLE_GROW
                             : sub == 16 ? WASM_OP_TABLE_SIZE : WASM_OP_TABLE_FILL);
        emit_u64(c, a);
        if (sub != 17)
            push(c, 1);
        return 0;
    default:
        return fail(c, CX_EINVAL, "unknown instruction");
    }
}

static int compile_call(compiler *c, uint32_t func_index)
{
    const wasm_module_def *def = c->def;
    if (func_index >= def->func_count)
        return fail(c, CX_EINVAL, "unknown function");
    const wasm_functype_def *type = wasm_func_type_def(def, func_index);
    if (!pop(c, type->param_count))
        return CX_EINVAL;
    if (def->funcs[func_index].imported) {
        emit_op(c, WASM_OP_CALL_IMPORT);
        emit_u64(c, func_index);
    } else {
        emit_op(c, WASM_OP_CALL);
        emit_cell(c, (wasm_cell){.ptr = &c->funcs[func_index - def->func_import_count]});
    }
    push(c, type->result_count);
    return 0;
}

/* One instruction. Returns 1 at the end of the function. */
static int compile_instruction(compiler *c, wasm_reader *r)
{
    const wasm_module_def *def = c->def;
    ctrl_frame *top = &c->ctrl[c->ctrl_count - 1];
    bool live = !top->unreachable;
    uint8_t op;
    uint32_t a = 0, b = 0;
    int rc;

    c->instr_offset = r->pos;
    if ((rc = wasm_read_u8(r, &op, c->err)) < 0)
        return rc;

    if (op >= 0x45 && op <= 0xc4) {
        if (!live || (op >= 0xbc && op <= 0xbf)) /* reinterpretations keep the bits */
            return 0;
        bool binary = is_binary_numeric(op);
        if (!pop(c, binary ? 2 : 1))
            return CX_EINVAL;
        emit_op(c, WASM_OP_NUMERIC + (op - 0x45));
        push(c, 1);
        return 0;
    }
    if (op >= 0x28 && op <= 0x3e)
        return compile_load(c, r, op, live);

    switch (op) {
    case 0x00: /* unreachable */
        if (live) {
            emit_op(c, WASM_OP_UNREACHABLE);
            set_unreachable(c);
        }
        return 0;
    case 0x01: /* nop */
        return 0;
    case 0x02: /* block */
    case 0x03: /* loop */
    case 0x04: /* if */ {
        uint32_t params = 0, results = 0;
        if ((rc = read_blocktype(c, r, &params, &results)) < 0)
            return rc;
        if (!live) {
            push_ctrl(c, op == 0x02 ? CTRL_BLOCK : op == 0x03 ? CTRL_LOOP : CTRL_IF, true, 0, 0);
            if (op == 0x04 && !c->failed)
                c->ctrl[c->ctrl_count - 1].else_fixup = 0; /* an else may follow */
            return c->failed ? CX_ENOMEM : 0;
        }
        size_t branch = NO_CELL;
        if (op == 0x04) {
            if (!pop(c, 1))
                return CX_EINVAL;
            emit_op(c, WASM_OP_BR_UNLESS);
            branch = emit_target(c, 0);
        }
        if (c->height < params)
            return fail(c, CX_EINVAL, "operand stack underflow at block");
        push_ctrl(c, op == 0x02 ? CTRL_BLOCK : op == 0x03 ? CTRL_LOOP : CTRL_IF, false, params,
                  results);
        if (c->failed)
            return CX_ENOMEM;
        ctrl_frame *f = &c->ctrl[c->ctrl_count - 1];
        f->else_fixup = branch;
        if (op == 0x03)
            f->start = begin_block(c);
        else if (op == 0x04)
            begin_block(c);
        return 0;
    }
    case 0x05:
        return compile_else(c);
    case 0x0b:
        return compile_end(c);
    case 0x0c: /* br */
    case 0x0d: /* br_if */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        if (op == 0x0d && !pop(c, 1))
            return CX_EINVAL;
        emit_branch(c, a, op == 0x0d);
        if (op == 0x0c)
            set_unreachable(c);
        return c->failed ? CX_EINVAL : 0;
    case 0x0e:
        rc = compile_br_table(c, r, live);
        if (rc == 0 && live)
            set_unreachable(c);
        return rc;
    case 0x0f: /* return */
        if (live) {
            emit_op(c, WASM_OP_RETURN);
            emit_u64(c, c->ctrl[0].results);
            set_unreachable(c);
        }
        return 0;
    case 0x10: /* call */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        return compile_call(c, a);
    case 0x11: /* call_indirect type table */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || (rc = wasm_read_u32(r, &b, c->err)) < 0)
            return rc;
        if (!live)
            return 0;
        if (a >= def->type_count)
            return fail(c, CX_EINVAL, "unknown type");
        if (!pop(c, 1) || !pop(c, def->types[a].param_count))
            return CX_EINVAL;
        emit_op(c, WASM_OP_CALL_INDIRECT);
        emit_pair(c, a, b);
        push(c, def->types[a].result_count);
        return 0;
    case 0x1a: /* drop */
        if (!live)
            return 0;
        if (!pop(c, 1))
            return CX_EINVAL;
        emit_op(c, WASM_OP_DROP);
        return 0;
    case 0x1c: /* select t* */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0)
            return rc;
        for (uint32_t i = 0; i < a; i++) {
            int64_t t;
            if ((rc = wasm_read_s33(r, &t, c->err)) < 0)
                return rc;
        }
        /* fall through */
    case 0x1b: /* select */
        if (!live)
            return 0;
        if (!pop(c, 3))
            return CX_EINVAL;
        emit_op(c, WASM_OP_SELECT);
        push(c, 1);
        return 0;
    case 0x20: /* local.get */
    case 0x21: /* local.set */
    case 0x22: /* local.tee */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        if (a >= c->locals)
            return fail(c, CX_EINVAL, "unknown local");
        if (op == 0x20) {
            emit_op(c, WASM_OP_LOCAL_GET);
            push(c, 1);
        } else {
            if (!pop(c, 1))
                return CX_EINVAL;
            emit_op(c, op == 0x21 ? WASM_OP_LOCAL_SET : WASM_OP_LOCAL_TEE);
            if (op == 0x22)
                push(c, 1);
        }
        emit_u64(c, a);
        return 0;
    case 0x23: /* global.get */
    case 0x24: /* global.set */
    case 0x25: /* table.get */
    case 0x26: /* table.set */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        if ((op == 0x23 || op == 0x24) && a >= def->global_count)
            return fail(c, CX_EINVAL, "unknown global");
        if ((op == 0x25 || op == 0x26) && a >= def->table_count)
            return fail(c, CX_EINVAL, "unknown table");
        if (!pop(c, op == 0x23 ? 0 : op == 0x26 ? 2 : 1))
            return CX_EINVAL;
        emit_op(c, op == 0x23   ? WASM_OP_GLOBAL_GET
                   : op == 0x24 ? WASM_OP_GLOBAL_SET
                   : op == 0x25 ? WASM_OP_TABLE_GET
                                : WASM_OP_TABLE_SET);
        emit_u64(c, a);
        if (op == 0x23 || op == 0x25)
            push(c, 1);
        return 0;
    case 0x3f: /* memory.size 0 */
    case 0x40: /* memory.grow 0 */ {
        uint8_t zero;
        if ((rc = wasm_read_u8(r, &zero, c->err)) < 0 || !live)
            return rc;
        if (op == 0x40 && !pop(c, 1))
            return CX_EINVAL;
        emit_op(c, op == 0x3f ? WASM_OP_MEMORY_SIZE : WASM_OP_MEMORY_GROW);
        push(c, 1);
        return 0;
    }
    case 0x41: /* i32.const */ {
        int32_t v;
        if ((rc = wasm_read_s32(r, &v, c->err)) < 0 || !live)
            return rc;
        emit_op(c, WASM_OP_CONST);
        emit_u64(c, (uint32_t)v);
        push(c, 1);
        return 0;
    }
    case 0x42: /* i64.const */ {
        int64_t v;
        if ((rc = wasm_read_s64(r, &v, c->err)) < 0 || !live)
            return rc;
        emit_op(c, WASM_OP_CONST);
        emit_u64(c, (uint64_t)v);
        push(c, 1);
        return 0;
    }
    case 0x43: /* f32.const */ {
        uint32_t bits;
        if ((rc = wasm_read_f32(r, &bits, c->err)) < 0 || !live)
            return rc;
        emit_op(c, WASM_OP_CONST);
        emit_u64(c, bits);
        push(c, 1);
        return 0;
    }
    case 0x44: /* f64.const */ {
        uint64_t bits;
        if ((rc = wasm_read_f64(r, &bits, c->err)) < 0 || !live)
            return rc;
        emit_op(c, WASM_OP_CONST);
        emit_u64(c, bits);
        push(c, 1);
        return 0;
    }
    case 0xd0: /* ref.null t */ {
        uint8_t t;
        if ((rc = wasm_read_u8(r, &t, c->err)) < 0 || !live)
            return rc;
        emit_op(c, WASM_OP_CONST);
        emit_u64(c, 0);
        push(c, 1);
        return 0;
    }
    case 0xd1: /* ref.is_null */
        if (!live)
            return 0;
        if (!pop(c, 1))
            return CX_EINVAL;
        emit_op(c, WASM_OP_REF_IS_NULL);
        push(c, 1);
        return 0;
    case 0xd2: /* ref.func */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        if (a >= def->func_count)
            return fail(c, CX_EINVAL, "unknown function");
        emit_op(c, WASM_OP_REF_FUNC);
        emit_u64(c, a);
        push(c, 1);
        return 0;
    case 0xfc:
        return compile_prefixed(c, r, live);
    default:
        return fail(c, CX_EINVAL, "unknown instruction");
    }
}

static int compile_function(compiler *c, uint32_t index, wasm_code_func *out)
{
    const wasm_module_def *def = c->def;
    const wasm_func_def *f = &def->funcs[index];
    const wasm_functype_def *type = wasm_func_type_def(def, index);

    c->len = c->origin_count = c->target_count = c->fixup_count = c->ctrl_count = 0;
    c->height = c->max_height = 0;
    c->fuel_cell = NO_CELL;
    c->fuel_count = 0;
    c->failed = false;
    c->locals = type->param_count + f->local_count;
    c->instr_offset = f->code_offset;

    push_ctrl(c, CTRL_FUNC, false, 0, type->result_count);
    begin_block(c);
    wasm_reader r = {def->bytes, f->code_offset, f->code_end};
    int rc = 0;
    while (rc == 0 && !c->failed) {
        if (r.pos >= r.end) {
            rc = fail(c, CX_EINVAL, "function body without end");
            break;
        }
        rc = compile_instruction(c, &r);
    }
    if (rc < 0 || c->failed)
        return rc < 0 ? rc : CX_EINVAL;
    if (c->ctrl_count != 0 || c->fixup_count != 0)
        return fail(c, CX_EINVAL, "unbalanced control at end of function");

    out->func_index = index;
    out->param_slots = type->param_count;
    out->local_slots = f->local_count;
    out->result_count = type->result_count;
    out->frame_slots = c->locals + c->max_height;
    out->code = malloc(c->len * sizeof *out->code);
    out->origins = malloc((c->origin_count ? c->origin_count : 1) * sizeof *out->origins);
    if (!out->code || !out->origins)
        return fail(c, CX_ENOMEM, "out of memory");
    memcpy(out->code, c->code, c->len * sizeof *out->code);
    memcpy(out->origins, c->origins, c->origin_count * sizeof *out->origins);
    out->code_len = c->len;
    out->origin_count = c->origin_count;
    for (size_t i = 0; i < c->target_count; i++) {
        wasm_cell *cell = &out->code[c->targets[i]];
        cell->target = out->code + cell->u64;
    }
    return 0;
}

wasm_code_func *wasm_compile(const wasm_module_def *def, cx_error *err)
{
    size_t count = def->func_count - def->func_import_count;
    wasm_code_func *funcs = calloc(count ? count : 1, sizeof *funcs);
    if (!funcs) {
        cx_error_set(err, CX_ENOMEM, "compile: out of memory");
        return NULL;
    }
    compiler c = {.def = def, .handlers = wasm_exec_handlers(), .funcs = funcs, .err = err};
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = compile_function(&c, (uint32_t)(def->func_import_count + i), &funcs[i]);
    free(c.code);
    free(c.origins);
    free(c.targets);
    free(c.fixups);
    free(c.ctrl);
    if (rc < 0) {
        wasm_compile_free(funcs, count);
        return NULL;
    }
    return funcs;
}

void wasm_compile_free(wasm_code_func *funcs, size_t count)
{
    if (!funcs)
        return;
    for (size_t i = 0; i < count; i++) {
        free(funcs[i].code);
        free(funcs[i].origins);
    }
    free(funcs);
}

uint32_t wasm_code_origin_of(const wasm_code_func *f, size_t pc)
{
    size_t lo = 0, hi = f->origin_count;
    if (hi == 0)
        return 0;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->origins[mid].cell <= pc)
            lo = mid;
        else
            hi = mid;
    }
    return f->origins[lo].offset;
}
