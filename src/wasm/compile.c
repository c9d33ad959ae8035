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
 * compile error rather than an interpreter reading outside its frame.
 *
 * Operands: the compiler tracks what each operand stack entry holds. An
 * entry is either in its own slot (locals + height), or still a local or a
 * constant that was pushed by local.get / *.const without emitting code.
 * Instructions read such entries where they are (a local's slot, or an
 * immediate for the second operand of a binary instruction). Pending
 * entries are copied to their own slots ("materialized") before anything
 * overwrites the local they name, at every label, branch and call, and
 * when more than LAZY_WINDOW of them pile up. All pending entries lie in
 * the window [lazy_floor, lazy_top), never wider than LAZY_WINDOW, which
 * bounds the scans for them.
 * An instruction whose result goes straight into local.set/tee writes the
 * local directly, and an i32 comparison followed by br_if or if becomes one
 * fused branch. Fuel still charges one unit per wasm instruction that the
 * plain translation would have emitted, so metering does not depend on
 * these optimizations. */
#include <stdlib.h>
#include <string.h>

#include "wasm/compile.h"

enum ctrl_kind { CTRL_FUNC, CTRL_BLOCK, CTRL_LOOP, CTRL_IF };

#define NO_CELL SIZE_MAX
#define NO_FIXUP SIZE_MAX
#define LAZY_WINDOW 32

enum operand_kind { OPERAND_SLOT, OPERAND_LOCAL, OPERAND_CONST };

typedef struct operand {
    enum operand_kind kind;
    uint64_t value; /* the local's slot or the constant */
} operand;

/* The last instruction emitted, when it produced the top operand. */
typedef struct producer {
    size_t start;    /* its first cell, NO_CELL when there is none */
    size_t dst_cell; /* the cell naming its result slot */
    bool dst_in_pair; /* the slot is the cell's second half */
    uint32_t height;  /* of its result */
    enum wasm_internal_op op; /* numeric ops: the plain (non-_I) form */
    bool immediate;   /* b is a constant */
    uint32_t a, b;
} producer;

typedef struct ctrl_frame {
    enum ctrl_kind kind;
    bool dead;        /* opened inside unreachable code: emits nothing */
    bool unreachable; /* the rest of this frame is unreachable */
    uint32_t height;  /* operand height at entry, parameters excluded */
    uint32_t params, results;
    size_t start;      /* loop: the header's cell */
    size_t else_fixup; /* if: the BR_UNLESS target cell until else/end */
    size_t fixups;     /* its first pending fixup, NO_FIXUP when none */
} ctrl_frame;

typedef struct fixup {
    size_t cell;    /* a target cell waiting for its label */
    size_t next;    /* the frame's next pending fixup, or NO_FIXUP */
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
    size_t fixups_pending; /* added but not yet resolved */
    ctrl_frame *ctrl;
    size_t ctrl_count, ctrl_cap;
    operand *operands; /* indexed by height */
    size_t operand_cap;
    uint32_t lazy_floor; /* every operand below it is in its own slot */
    uint32_t lazy_top;   /* so is every operand from this height up */
    producer last;

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

/* Starts an instruction; `charged` says whether it counts as a wasm
 * instruction for fuel (materializing copies and FUEL itself do not). */
static size_t emit_instr(compiler *c, enum wasm_internal_op op, bool charged)
{
    if (!grow_array((void **)&c->origins, &c->origin_cap, c->origin_count + 1,
                    sizeof *c->origins)) {
        fail(c, CX_ENOMEM, "out of memory");
        return 0;
    }
    c->origins[c->origin_count].cell = (uint32_t)c->len;
    c->origins[c->origin_count].offset = (uint32_t)c->instr_offset;
    c->origin_count++;
    if (charged)
        c->fuel_count++;
    c->last.start = NO_CELL;
    return emit_cell(c, (wasm_cell){.op = c->handlers[op]});
}

static size_t emit_op(compiler *c, enum wasm_internal_op op)
{
    return emit_instr(c, op, true);
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
    ctrl_frame *f = &c->ctrl[frame];
    c->fixups[c->fixup_count] = (fixup){cell, f->fixups};
    f->fixups = c->fixup_count++;
    c->fixups_pending++;
}

/* Points every pending branch to `frame` at `label`. */
static void resolve_fixups(compiler *c, size_t frame, size_t label)
{
    if (c->failed)
        return;
    ctrl_frame *f = &c->ctrl[frame];
    for (size_t i = f->fixups; i != NO_FIXUP; i = c->fixups[i].next) {
        c->code[c->fixups[i].cell].u64 = label;
        c->fixups_pending--;
    }
    f->fixups = NO_FIXUP;
    if (c->fixups_pending == 0)
        c->fixup_count = 0; /* reuse the array */
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
    size_t label = emit_instr(c, WASM_OP_FUEL, false);
    emit_u64(c, 1);
    c->fuel_cell = label;
    c->fuel_count = 0;
    return label;
}

/* ---- operands ---- */

static uint32_t slot_of(const compiler *c, uint32_t height)
{
    return c->locals + height;
}

static void lower_height(compiler *c, uint32_t height)
{
    c->height = height;
    if (c->lazy_floor > height)
        c->lazy_floor = height;
    if (c->lazy_top > height)
        c->lazy_top = height;
}

static bool pop(compiler *c, uint32_t n)
{
    if (c->height < n || c->height - n < c->ctrl[c->ctrl_count - 1].height) {
        fail(c, CX_EINVAL, "operand stack underflow");
        return false;
    }
    lower_height(c, c->height - n);
    return true;
}

/* Pushes n operands that are in their own slots. */
static void push(compiler *c, uint32_t n)
{
    if (!grow_array((void **)&c->operands, &c->operand_cap, (size_t)c->height + n,
                    sizeof *c->operands)) {
        fail(c, CX_ENOMEM, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        c->operands[c->height + i] = (operand){OPERAND_SLOT, 0};
    c->height += n;
    if (c->height > c->max_height)
        c->max_height = c->height;
}

/* Copies the operand at `height` into its own slot. */
static void materialize(compiler *c, uint32_t height)
{
    operand *o = &c->operands[height];
    if (o->kind == OPERAND_LOCAL) {
        emit_instr(c, WASM_OP_COPY, false);
        emit_pair(c, (uint32_t)o->value, slot_of(c, height));
    } else if (o->kind == OPERAND_CONST) {
        emit_instr(c, WASM_OP_CONST, false);
        emit_u64(c, slot_of(c, height));
        emit_u64(c, o->value);
    }
    o->kind = OPERAND_SLOT;
}

static void materialize_all(compiler *c)
{
    for (uint32_t h = c->lazy_floor; h < c->lazy_top; h++)
        materialize(c, h);
    c->lazy_floor = c->lazy_top = c->height;
}

/* Pushes a local or constant without emitting code. */
static void push_lazy(compiler *c, enum operand_kind kind, uint64_t value)
{
    if (c->height - c->lazy_floor >= LAZY_WINDOW)
        materialize_all(c);
    push(c, 1);
    if (!c->failed) {
        c->operands[c->height - 1] = (operand){kind, value};
        c->lazy_top = c->height;
    }
}

/* The slot to read the (popped) operand at `height` from; a constant is
 * materialized first. */
static uint32_t operand_slot(compiler *c, uint32_t height)
{
    operand *o = &c->operands[height];
    if (o->kind == OPERAND_LOCAL)
        return (uint32_t)o->value;
    if (o->kind == OPERAND_CONST)
        materialize(c, height);
    return slot_of(c, height);
}

/* Records that the instruction just emitted, starting at `start`, wrote
 * the top operand through `dst_cell`. */
static void produced(compiler *c, size_t start, size_t dst_cell, bool in_pair)
{
    if (c->failed)
        return;
    c->last = (producer){.start = start, .dst_cell = dst_cell, .dst_in_pair = in_pair,
                         .height = c->height - 1, .op = WASM_OP_COUNT};
}

/* local.set/tee `local` of the popped operand at c->height: makes the
 * instruction that computed it write the local instead, when it is the
 * last one emitted and no pending operand still reads the old value. */
static bool retarget_to_local(compiler *c, uint32_t local)
{
    if (c->last.start == NO_CELL || c->last.height != c->height ||
        c->operands[c->height].kind != OPERAND_SLOT)
        return false;
    for (uint32_t h = c->lazy_floor; h < c->lazy_top; h++)
        if (c->operands[h].kind == OPERAND_LOCAL && c->operands[h].value == local)
            return false;
    wasm_cell *dst = &c->code[c->last.dst_cell];
    if (c->last.dst_in_pair)
        dst->pair.b = local;
    else
        dst->u64 = local;
    c->last.start = NO_CELL;
    return true;
}

/* Before `local` is written: copies pending reads of it to their slots. */
static void materialize_reads_of(compiler *c, uint32_t local)
{
    for (uint32_t h = c->lazy_floor; h < c->lazy_top; h++)
        if (c->operands[h].kind == OPERAND_LOCAL && c->operands[h].value == local)
            materialize(c, h);
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
    f->fixups = NO_FIXUP;
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

/* ---- branches ---- */

/* The control frame `depth` levels out and the arity of its label, after
 * checking that the operand stack holds the label's values. */
static bool branch_frame(compiler *c, uint32_t depth, size_t *index, uint32_t *arity)
{
    if (depth >= c->ctrl_count) {
        fail(c, CX_EINVAL, "unknown label");
        return false;
    }
    *index = c->ctrl_count - 1 - depth;
    const ctrl_frame *t = &c->ctrl[*index];
    *arity = t->kind == CTRL_LOOP ? t->params : t->results;
    if (c->height < *arity || c->height - *arity < t->height) {
        fail(c, CX_EINVAL, "operand stack underflow at branch");
        return false;
    }
    return true;
}

/* A branch's target cell; forward labels are patched when they end. */
static void emit_label_target(compiler *c, size_t index)
{
    const ctrl_frame *t = &c->ctrl[index];
    size_t cell = emit_target(c, t->kind == CTRL_LOOP ? t->start : 0);
    if (t->kind != CTRL_LOOP)
        add_fixup(c, cell, index);
}

/* return, or br to the function's frame: the top `arity` operands. */
static void emit_return(compiler *c, uint32_t arity)
{
    uint32_t src;
    if (arity == 1) {
        src = operand_slot(c, c->height - 1);
    } else {
        for (uint32_t h = c->height - arity; h < c->height; h++)
            materialize(c, h);
        src = slot_of(c, c->height - arity);
    }
    emit_op(c, WASM_OP_RETURN);
    emit_pair(c, arity, src);
}

/* When the popped condition at c->height was computed by an i32
 * comparison just emitted, removes that comparison and returns it, to be
 * fused with the branch. */
static bool take_comparison(compiler *c, producer *cmp)
{
    if (c->last.start == NO_CELL || c->last.height != c->height ||
        c->last.op < WASM_OP_I32_EQZ || c->last.op > WASM_OP_I32_GE_U ||
        c->operands[c->height].kind != OPERAND_SLOT)
        return false;
    *cmp = c->last;
    c->len = cmp->start;
    c->origin_count--;
    c->last.start = NO_CELL;
    return true;
}

/* BR_IF_name / BR_UNLESS_name [a|b], the caller adds the target. */
static void emit_fused_compare(compiler *c, const producer *cmp, bool unless)
{
    enum wasm_internal_op op = WASM_OP_BR_IF_I32_EQZ + 4 * (cmp->op - WASM_OP_I32_EQZ) +
                               (unless ? 2 : 0) + (cmp->immediate ? 1 : 0);
    emit_op(c, op);
    emit_pair(c, cmp->a, cmp->b);
}

static void compile_br(compiler *c, uint32_t depth)
{
    size_t index;
    uint32_t arity;
    if (!branch_frame(c, depth, &index, &arity))
        return;
    const ctrl_frame *t = &c->ctrl[index];
    if (t->kind == CTRL_FUNC) {
        emit_return(c, arity);
        return;
    }
    materialize_all(c);
    if (c->height - arity == t->height) {
        emit_op(c, WASM_OP_JUMP);
        emit_label_target(c, index);
        return;
    }
    emit_op(c, WASM_OP_BR_DROP);
    emit_label_target(c, index);
    emit_pair(c, arity, slot_of(c, t->height));
    emit_u64(c, slot_of(c, c->height - arity));
}

static void compile_br_if(compiler *c, uint32_t depth)
{
    size_t index;
    uint32_t arity;
    if (!pop(c, 1) || !branch_frame(c, depth, &index, &arity))
        return;
    const ctrl_frame *t = &c->ctrl[index];
    bool drop = c->height - arity != t->height;
    producer cmp;
    if (!drop && take_comparison(c, &cmp)) {
        materialize_all(c);
        emit_fused_compare(c, &cmp, false);
        emit_label_target(c, index);
        return;
    }
    uint32_t cond = operand_slot(c, c->height);
    materialize_all(c);
    emit_op(c, drop ? WASM_OP_BR_IF_DROP : WASM_OP_BR_IF);
    emit_u64(c, cond);
    emit_label_target(c, index);
    if (drop) {
        emit_pair(c, arity, slot_of(c, t->height));
        emit_u64(c, slot_of(c, c->height - arity));
    }
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
        materialize_all(c);
        if (!pop(c, 1))
            return CX_EINVAL;
        emit_op(c, WASM_OP_BR_TABLE);
        emit_u64(c, count);
        emit_u64(c, slot_of(c, c->height));
    }
    for (uint32_t i = 0; i <= count; i++) {
        uint32_t depth;
        if ((rc = wasm_read_u32(r, &depth, c->err)) < 0)
            return rc;
        if (!live)
            continue;
        size_t index;
        uint32_t arity;
        if (!branch_frame(c, depth, &index, &arity))
            return CX_EINVAL;
        emit_label_target(c, index);
        emit_pair(c, arity, slot_of(c, c->ctrl[index].height));
    }
    if (live)
        c->ctrl[c->ctrl_count - 1].unreachable = true;
    return c->failed ? CX_EINVAL : 0;
}

static void set_unreachable(compiler *c)
{
    ctrl_frame *top = &c->ctrl[c->ctrl_count - 1];
    top->unreachable = true;
    lower_height(c, top->height);
}

static int compile_else(compiler *c)
{
    ctrl_frame *top = &c->ctrl[c->ctrl_count - 1];
    if (top->kind != CTRL_IF || top->else_fixup == NO_CELL)
        return fail(c, CX_EINVAL, "else without if");
    if (top->dead)
        return 0;
    if (!top->unreachable) {
        materialize_all(c);
        emit_op(c, WASM_OP_JUMP);
        add_fixup(c, emit_target(c, 0), c->ctrl_count - 1);
    }
    size_t label = begin_block(c);
    if (c->failed)
        return CX_ENOMEM;
    c->code[top->else_fixup].u64 = label;
    top->else_fixup = NO_CELL;
    top->unreachable = false;
    lower_height(c, top->height);
    push(c, top->params); /* in their slots since the if */
    return c->failed ? CX_ENOMEM : 0;
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
    if (!top->unreachable)
        materialize_all(c);
    size_t frame = c->ctrl_count - 1;
    if (top->kind == CTRL_FUNC) {
        size_t label = emit_op(c, WASM_OP_RETURN);
        emit_pair(c, top->results, slot_of(c, 0));
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
    lower_height(c, top->height);
    push(c, top->results);
    c->ctrl_count--;
    return c->failed ? CX_ENOMEM : 0;
}

/* ---- other instructions ---- */

static bool is_binary_numeric(uint8_t op)
{
    return (op >= 0x46 && op <= 0x4f) || (op >= 0x51 && op <= 0x66) ||
           (op >= 0x6a && op <= 0x78) || (op >= 0x7c && op <= 0x8a) ||
           (op >= 0x92 && op <= 0x98) || (op >= 0xa0 && op <= 0xa6);
}

/* A unary instruction [a|dst]. */
static void compile_unary(compiler *c, enum wasm_internal_op op)
{
    if (!pop(c, 1))
        return;
    uint32_t a = operand_slot(c, c->height);
    size_t start = emit_op(c, op);
    size_t dst = emit_pair(c, a, slot_of(c, c->height));
    push(c, 1);
    produced(c, start, dst, true);
    if (!c->failed) {
        c->last.op = op;
        c->last.a = a;
    }
}

/* The numeric instruction `opcode` (0x45..0xc4). */
static void compile_numeric(compiler *c, uint8_t opcode)
{
    enum wasm_internal_op op = WASM_OP_NUMERIC + (opcode - 0x45);
    if (!is_binary_numeric(opcode)) {
        compile_unary(c, op);
        return;
    }
    if (!pop(c, 2))
        return;
    uint32_t h = c->height;
    uint32_t a = operand_slot(c, h), b;
    bool immediate = c->operands[h + 1].kind == OPERAND_CONST;
    size_t start, dst;
    if (immediate) {
        uint64_t value = c->operands[h + 1].value;
        b = (uint32_t)value;
        start = emit_op(c, WASM_OP_NUMERIC_I + (opcode - 0x45));
        dst = emit_pair(c, a, slot_of(c, h));
        emit_u64(c, value);
    } else {
        b = operand_slot(c, h + 1);
        start = emit_op(c, op);
        emit_pair(c, a, b);
        dst = emit_u64(c, slot_of(c, h));
    }
    push(c, 1);
    produced(c, start, dst, immediate);
    if (!c->failed) {
        c->last.op = op;
        c->last.immediate = immediate;
        c->last.a = a;
        c->last.b = b;
    }
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
    bool load = op <= 0x35;
    if (!pop(c, load ? 1 : 2))
        return CX_EINVAL;
    uint32_t h = c->height, addr, add = 0;
    if (c->last.start != NO_CELL && c->last.height == h && c->last.op == WASM_OP_I32_ADD &&
        c->last.immediate && c->operands[h].kind == OPERAND_SLOT) {
        /* The address is "x + constant" computed just before: the access
         * does the (wrapping) add itself. */
        addr = c->last.a;
        add = c->last.b;
        c->len = c->last.start;
        c->origin_count--;
        c->last.start = NO_CELL;
    } else {
        addr = operand_slot(c, h);
    }
    if (load) {
        size_t start = emit_op(c, loads[op - 0x28]);
        size_t dst = emit_pair(c, addr, slot_of(c, h));
        emit_pair(c, offset, add);
        push(c, 1);
        produced(c, start, dst, true);
    } else {
        uint32_t value = operand_slot(c, h + 1);
        emit_op(c, stores[op - 0x36]);
        emit_pair(c, addr, value);
        emit_pair(c, offset, add);
    }
    return c->failed ? CX_EINVAL : 0;
}

/* An instruction that works on the operand stack in its slots: [top, ...];
 * the caller adds further immediates. */
static bool emit_in_place(compiler *c, enum wasm_internal_op op, uint32_t pops, uint32_t pushes)
{
    materialize_all(c);
    uint32_t top = slot_of(c, c->height);
    if (!pop(c, pops))
        return false;
    emit_op(c, op);
    emit_u64(c, top);
    push(c, pushes);
    return !c->failed;
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
        compile_unary(c, WASM_OP_I32_TRUNC_SAT_F32_S + sub);
        return c->failed ? CX_EINVAL : 0;
    case 8: /* memory.init data 0 */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || (rc = wasm_read_u8(r, &byte, c->err)) < 0)
            return rc;
        if (!live)
            return 0;
        if (!emit_in_place(c, WASM_OP_MEMORY_INIT, 3, 0))
            return CX_EINVAL;
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
        return emit_in_place(c, WASM_OP_MEMORY_COPY, 3, 0) ? 0 : CX_EINVAL;
    case 11: /* memory.fill 0 */
        if ((rc = wasm_read_u8(r, &byte, c->err)) < 0 || !live)
            return rc;
        return emit_in_place(c, WASM_OP_MEMORY_FILL, 3, 0) ? 0 : CX_EINVAL;
    case 12: /* table.init elem table */
    case 14: /* table.copy dst src */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || (rc = wasm_read_u32(r, &b, c->err)) < 0)
            return rc;
        if (!live)
            return 0;
        if (!emit_in_place(c, sub == 12 ? WASM_OP_TABLE_INIT : WASM_OP_TABLE_COPY, 3, 0))
            return CX_EINVAL;
        emit_pair(c, a, b);
        return 0;
    case 15: /* table.grow */
    case 16: /* table.size */
    case 17: /* table.fill */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        if (!emit_in_place(c,
                           sub == 15   ? WASM_OP_TABLE_GROW
                           : sub == 16 ? WASM_OP_TABLE_SIZE
                                       : WASM_OP_TABLE_FILL,
                           sub == 15 ? 2 : sub == 16 ? 0 : 3, sub == 17 ? 0 : 1))
            return CX_EINVAL;
        emit_u64(c, a);
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
    materialize_all(c);
    if (!pop(c, type->param_count))
        return CX_EINVAL;
    if (def->funcs[func_index].imported) {
        emit_op(c, WASM_OP_CALL_IMPORT);
        emit_u64(c, func_index);
    } else {
        emit_op(c, WASM_OP_CALL);
        emit_cell(c, (wasm_cell){.ptr = &c->funcs[func_index - def->func_import_count]});
    }
    emit_u64(c, slot_of(c, c->height));
    push(c, type->result_count);
    return c->failed ? CX_EINVAL : 0;
}

/* local.set / local.tee. */
static void compile_local_write(compiler *c, uint32_t local, bool tee)
{
    if (!pop(c, 1))
        return;
    uint32_t h = c->height;
    if (retarget_to_local(c, local)) {
        c->fuel_count++;
        if (tee)
            push_lazy(c, OPERAND_LOCAL, local);
        return;
    }
    materialize_reads_of(c, local);
    operand o = c->operands[h];
    if (o.kind == OPERAND_CONST) {
        emit_op(c, WASM_OP_CONST);
        emit_u64(c, local);
        emit_u64(c, o.value);
    } else {
        emit_op(c, WASM_OP_COPY);
        emit_pair(c, o.kind == OPERAND_LOCAL ? (uint32_t)o.value : slot_of(c, h), local);
    }
    if (tee) {
        c->height++; /* the operand stays what it was */
        if (o.kind != OPERAND_SLOT)
            c->lazy_top = c->height; /* lower_height had dropped it */
    }
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
        compile_numeric(c, op);
        return c->failed ? CX_EINVAL : 0;
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
            producer cmp;
            if (take_comparison(c, &cmp)) {
                materialize_all(c);
                emit_fused_compare(c, &cmp, true);
            } else {
                uint32_t cond = operand_slot(c, c->height);
                materialize_all(c);
                emit_op(c, WASM_OP_BR_UNLESS);
                emit_u64(c, cond);
            }
            branch = emit_target(c, 0);
        } else {
            materialize_all(c);
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
        if (op == 0x0d) {
            compile_br_if(c, a);
        } else {
            compile_br(c, a);
            set_unreachable(c);
        }
        return c->failed ? CX_EINVAL : 0;
    case 0x0e:
        rc = compile_br_table(c, r, live);
        if (rc == 0 && live)
            set_unreachable(c);
        return rc;
    case 0x0f: /* return */
        if (live) {
            if (c->height < c->ctrl[0].results)
                return fail(c, CX_EINVAL, "operand stack underflow at return");
            emit_return(c, c->ctrl[0].results);
            set_unreachable(c);
        }
        return c->failed ? CX_EINVAL : 0;
    case 0x10: /* call */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        return compile_call(c, a);
    case 0x11: /* call_indirect type table */ {
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || (rc = wasm_read_u32(r, &b, c->err)) < 0)
            return rc;
        if (!live)
            return 0;
        if (a >= def->type_count)
            return fail(c, CX_EINVAL, "unknown type");
        materialize_all(c);
        if (!pop(c, 1) || !pop(c, def->types[a].param_count))
            return CX_EINVAL;
        uint32_t base = slot_of(c, c->height);
        emit_op(c, WASM_OP_CALL_INDIRECT);
        emit_pair(c, a, b);
        emit_pair(c, base, base + def->types[a].param_count);
        push(c, def->types[a].result_count);
        return c->failed ? CX_EINVAL : 0;
    }
    case 0x1a: /* drop */
        if (!live)
            return 0;
        if (!pop(c, 1))
            return CX_EINVAL;
        c->fuel_count++;
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
    case 0x1b: /* select */ {
        if (!live)
            return 0;
        if (!pop(c, 3))
            return CX_EINVAL;
        uint32_t h = c->height;
        uint32_t x = operand_slot(c, h), y = operand_slot(c, h + 1);
        uint32_t cond = operand_slot(c, h + 2);
        size_t start = emit_op(c, WASM_OP_SELECT);
        emit_pair(c, x, y);
        size_t dst = emit_pair(c, cond, slot_of(c, h));
        push(c, 1);
        produced(c, start, dst, true);
        return c->failed ? CX_EINVAL : 0;
    }
    case 0x20: /* local.get */
    case 0x21: /* local.set */
    case 0x22: /* local.tee */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        if (a >= c->locals)
            return fail(c, CX_EINVAL, "unknown local");
        if (op == 0x20) {
            c->fuel_count++;
            push_lazy(c, OPERAND_LOCAL, a);
        } else {
            compile_local_write(c, a, op == 0x22);
        }
        return c->failed ? CX_EINVAL : 0;
    case 0x23: /* global.get */
    case 0x24: /* global.set */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        if (a >= def->global_count)
            return fail(c, CX_EINVAL, "unknown global");
        if (op == 0x23) {
            size_t start = emit_op(c, WASM_OP_GLOBAL_GET);
            size_t dst = emit_pair(c, a, slot_of(c, c->height));
            push(c, 1);
            produced(c, start, dst, true);
        } else {
            if (!pop(c, 1))
                return CX_EINVAL;
            uint32_t src = operand_slot(c, c->height);
            emit_op(c, WASM_OP_GLOBAL_SET);
            emit_pair(c, a, src);
        }
        return c->failed ? CX_EINVAL : 0;
    case 0x25: /* table.get */
    case 0x26: /* table.set */
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        if (a >= def->table_count)
            return fail(c, CX_EINVAL, "unknown table");
        if (!emit_in_place(c, op == 0x25 ? WASM_OP_TABLE_GET : WASM_OP_TABLE_SET,
                           op == 0x25 ? 1 : 2, op == 0x25 ? 1 : 0))
            return CX_EINVAL;
        emit_u64(c, a);
        return 0;
    case 0x3f: /* memory.size 0 */
    case 0x40: /* memory.grow 0 */ {
        uint8_t zero;
        if ((rc = wasm_read_u8(r, &zero, c->err)) < 0 || !live)
            return rc;
        return emit_in_place(c, op == 0x3f ? WASM_OP_MEMORY_SIZE : WASM_OP_MEMORY_GROW,
                             op == 0x3f ? 0 : 1, 1)
                   ? 0
                   : CX_EINVAL;
    }
    case 0x41: /* i32.const */ {
        int32_t v;
        if ((rc = wasm_read_s32(r, &v, c->err)) < 0 || !live)
            return rc;
        c->fuel_count++;
        push_lazy(c, OPERAND_CONST, (uint32_t)v);
        return c->failed ? CX_EINVAL : 0;
    }
    case 0x42: /* i64.const */ {
        int64_t v;
        if ((rc = wasm_read_s64(r, &v, c->err)) < 0 || !live)
            return rc;
        c->fuel_count++;
        push_lazy(c, OPERAND_CONST, (uint64_t)v);
        return c->failed ? CX_EINVAL : 0;
    }
    case 0x43: /* f32.const */ {
        uint32_t bits;
        if ((rc = wasm_read_f32(r, &bits, c->err)) < 0 || !live)
            return rc;
        c->fuel_count++;
        push_lazy(c, OPERAND_CONST, bits);
        return c->failed ? CX_EINVAL : 0;
    }
    case 0x44: /* f64.const */ {
        uint64_t bits;
        if ((rc = wasm_read_f64(r, &bits, c->err)) < 0 || !live)
            return rc;
        c->fuel_count++;
        push_lazy(c, OPERAND_CONST, bits);
        return c->failed ? CX_EINVAL : 0;
    }
    case 0xd0: /* ref.null t */ {
        uint8_t t;
        if ((rc = wasm_read_u8(r, &t, c->err)) < 0 || !live)
            return rc;
        c->fuel_count++;
        push_lazy(c, OPERAND_CONST, 0);
        return c->failed ? CX_EINVAL : 0;
    }
    case 0xd1: /* ref.is_null */
        if (!live)
            return 0;
        compile_unary(c, WASM_OP_REF_IS_NULL);
        return c->failed ? CX_EINVAL : 0;
    case 0xd2: /* ref.func */ {
        if ((rc = wasm_read_u32(r, &a, c->err)) < 0 || !live)
            return rc;
        if (a >= def->func_count)
            return fail(c, CX_EINVAL, "unknown function");
        size_t start = emit_op(c, WASM_OP_REF_FUNC);
        size_t dst = emit_pair(c, a, slot_of(c, c->height));
        push(c, 1);
        produced(c, start, dst, true);
        return c->failed ? CX_EINVAL : 0;
    }
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
    c->fixups_pending = 0;
    c->height = c->max_height = 0;
    c->lazy_floor = c->lazy_top = 0;
    c->last.start = NO_CELL;
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
    if (c->ctrl_count != 0 || c->fixups_pending != 0)
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
    free(c.operands);
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
