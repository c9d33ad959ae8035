/* Decoding a module: the binary format into a wasm_module_def.
 *
 * This file owns everything the spec calls "malformed": the preamble, the
 * section order and sizes, the encoding of every entity, and the syntax of
 * every instruction (function bodies and constant expressions are read once
 * here, immediates included, so an illegal opcode is always a decode error).
 * Typing rules are left to validate.c.
 *
 * Hostile input is bounded twice: every read stays inside its section or
 * function body, and every vector length is checked against the bytes left
 * before anything is allocated (each element takes at least one byte), so the
 * memory used is proportional to the input. The name section is decoded
 * last and tolerantly: a broken one is ignored, as the spec allows. */
#include <stdlib.h>
#include <string.h>

#include "wasm/module.h"

enum {
    SEC_CUSTOM = 0,
    SEC_TYPE = 1,
    SEC_IMPORT = 2,
    SEC_FUNCTION = 3,
    SEC_TABLE = 4,
    SEC_MEMORY = 5,
    SEC_GLOBAL = 6,
    SEC_EXPORT = 7,
    SEC_START = 8,
    SEC_ELEMENT = 9,
    SEC_CODE = 10,
    SEC_DATA = 11,
    SEC_DATA_COUNT = 12,
};

static const char *const section_names[] = {
    "custom", "type",  "import", "function", "table", "memory",    "global",
    "export", "start", "element", "code",    "data",  "data count",
};

/* The required order of the known sections (data count sits before code). */
static const int section_rank[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 10};

typedef struct decoder {
    wasm_module_def *def;
    const wasm_features *features;
    cx_error *err;
    uint32_t func_section_count; /* functions declared by the function section */
    bool has_code;
    bool has_data;
    size_t name_section, name_section_end; /* the "name" custom section, if any */
    uint64_t total_locals;
    /* A body names a data segment (memory.init, data.drop) without a data
     * count section: malformed once a data section follows. */
    bool uses_data_index;
    size_t uses_data_at;
} decoder;

/* ---- helpers ------------------------------------------------------------ */

static int fail(decoder *d, size_t offset, const char *what)
{
    return cx_error_set(d->err, CX_EPARSE, "%s at offset %zu", what, offset);
}

static int out_of_memory(decoder *d)
{
    return cx_error_set(d->err, CX_ENOMEM, "out of memory decoding the module");
}

/* Grows *array (of `size`-byte elements, `*cap` allocated) to hold `need`. */
static int grow(decoder *d, void **array, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    uint32_t n = *cap ? *cap : 8;
    while (n < need)
        n = n > UINT32_MAX / 2 ? need : n * 2;
    void *p = realloc(*array, (size_t)n * size);
    if (!p)
        return out_of_memory(d);
    memset((char *)p + (size_t)*cap * size, 0, (size_t)(n - *cap) * size);
    *array = p;
    *cap = n;
    return 0;
}

static char *copy_name(const char *bytes, uint32_t len)
{
    char *s = malloc((size_t)len + 1);
    if (s) {
        memcpy(s, bytes, len);
        s[len] = '\0';
    }
    return s;
}

/* Reads a vector length, refusing one that cannot fit in what is left (each
 * element takes at least `min_size` bytes) or exceeds `limit`. */
static int read_count(decoder *d, wasm_reader *r, uint32_t limit, size_t min_size,
                      const char *what, uint32_t *out)
{
    size_t at = r->pos;
    int rc = wasm_read_u32(r, out, d->err);
    if (rc)
        return rc;
    if (*out > limit)
        return cx_error_set(d->err, CX_EPARSE, "too many %s (%u, at most %u) at offset %zu",
                            what, *out, limit, at);
    if ((uint64_t)*out * min_size > r->end - r->pos)
        return fail(d, r->pos, "unexpected end");
    return 0;
}

static int read_valtype(decoder *d, wasm_reader *r, wasm_valtype *out)
{
    uint8_t b;
    size_t at = r->pos;
    int rc = wasm_read_u8(r, &b, d->err);
    if (rc)
        return rc;
    if (!wasm_is_valtype(b, d->features))
        return fail(d, at, "malformed value type");
    *out = (wasm_valtype)b;
    return 0;
}

static int read_reftype(decoder *d, wasm_reader *r, wasm_valtype *out)
{
    uint8_t b;
    size_t at = r->pos;
    int rc = wasm_read_u8(r, &b, d->err);
    if (rc)
        return rc;
    if (b != WASM_FUNCREF && !(b == WASM_EXTERNREF && d->features->reference_types))
        return fail(d, at, "malformed reference type");
    *out = (wasm_valtype)b;
    return 0;
}

static int read_limits(decoder *d, wasm_reader *r, wasm_limits_decl *out)
{
    uint8_t flags;
    size_t at = r->pos;
    int rc = wasm_read_u8(r, &flags, d->err);
    if (rc)
        return rc;
    if (flags > 1)
        return fail(d, at, "integer too large (limits flags)");
    out->has_max = flags == 1;
    rc = wasm_read_u32(r, &out->min, d->err);
    if (rc == 0 && out->has_max)
        rc = wasm_read_u32(r, &out->max, d->err);
    return rc;
}

static int read_table_type(decoder *d, wasm_reader *r, wasm_table_def *out)
{
    int rc = read_reftype(d, r, &out->elem_type);
    return rc ? rc : read_limits(d, r, &out->limits);
}

static int read_global_type(decoder *d, wasm_reader *r, wasm_global_def *out)
{
    int rc = read_valtype(d, r, &out->type);
    if (rc)
        return rc;
    uint8_t m;
    size_t at = r->pos;
    rc = wasm_read_u8(r, &m, d->err);
    if (rc)
        return rc;
    if (m > 1)
        return fail(d, at, "malformed mutability");
    out->mutable_ = m == 1;
    return 0;
}

/* Reads an instruction sequence up to its matching `end`: a constant
 * expression or a function body. Checks every opcode and immediate. */
static int read_expr(decoder *d, wasm_reader *r, bool body, size_t *start, size_t *end)
{
    *start = r->pos;
    uint32_t depth = 1;
    wasm_instr in;
    while (depth > 0) {
        int rc = wasm_read_instr(r, d->features, &in, d->err);
        if (rc)
            return rc;
        switch (in.opcode) {
        case 0x02: case 0x03: case 0x04:
            depth++;
            break;
        case 0x0b:
            depth--;
            break;
        case 0xfc08: /* memory.init */
        case 0xfc09: /* data.drop */
            if (body && !d->def->has_data_count && !d->uses_data_index) {
                d->uses_data_index = true;
                d->uses_data_at = in.offset;
            }
            break;
        default:
            break;
        }
    }
    *end = r->pos;
    return 0;
}

/* ---- sections ----------------------------------------------------------- */

static int decode_types(decoder *d, wasm_reader *r)
{
    wasm_module_def *def = d->def;
    uint32_t n;
    int rc = read_count(d, r, WASM_MAX_TYPES, 3, "types", &n);
    if (rc)
        return rc;
    def->types = calloc(n ? n : 1, sizeof *def->types);
    if (!def->types)
        return out_of_memory(d);
    for (uint32_t i = 0; i < n; i++) {
        wasm_functype_def *t = &def->types[i];
        uint8_t form;
        size_t at = r->pos;
        if ((rc = wasm_read_u8(r, &form, d->err)))
            return rc;
        if (form != 0x60)
            return fail(d, at, "integer representation too long (function type form)");
        uint32_t np, nr;
        wasm_valtype params[WASM_MAX_PARAMS];
        if ((rc = read_count(d, r, WASM_MAX_PARAMS, 1, "parameters", &np)))
            return rc;
        for (uint32_t k = 0; k < np; k++)
            if ((rc = read_valtype(d, r, &params[k])))
                return rc;
        if ((rc = read_count(d, r, WASM_MAX_RESULTS, 1, "results", &nr)))
            return rc;
        t->types = malloc(((size_t)np + nr) * sizeof *t->types + 1);
        if (!t->types)
            return out_of_memory(d);
        def->type_count = i + 1;
        memcpy(t->types, params, np * sizeof *params);
        for (uint32_t k = 0; k < nr; k++)
            if ((rc = read_valtype(d, r, &t->types[np + k])))
                return rc;
        t->param_count = np;
        t->result_count = nr;
    }
    return 0;
}

static int add_func(decoder *d, uint32_t *cap, uint32_t type_index, bool imported)
{
    wasm_module_def *def = d->def;
    if (def->func_count >= WASM_MAX_FUNCTIONS)
        return cx_error_set(d->err, CX_EPARSE, "too many functions (at most %u)",
                            WASM_MAX_FUNCTIONS);
    int rc = grow(d, (void **)&def->funcs, cap, def->func_count + 1, sizeof *def->funcs);
    if (rc)
        return rc;
    wasm_func_def *f = &def->funcs[def->func_count++];
    f->type_index = type_index;
    f->imported = imported;
    return 0;
}

static int decode_imports(decoder *d, wasm_reader *r, uint32_t *func_cap)
{
    wasm_module_def *def = d->def;
    uint32_t n;
    int rc = read_count(d, r, WASM_MAX_IMPORTS, 4, "imports", &n);
    if (rc)
        return rc;
    def->imports = calloc(n ? n : 1, sizeof *def->imports);
    if (!def->imports)
        return out_of_memory(d);
    uint32_t table_cap = 0, memory_cap = 0, global_cap = 0;
    for (uint32_t i = 0; i < n; i++) {
        wasm_import_def *im = &def->imports[i];
        const char *mod, *name;
        uint32_t mod_len, name_len;
        if ((rc = wasm_read_name(r, &mod, &mod_len, d->err)) ||
            (rc = wasm_read_name(r, &name, &name_len, d->err)))
            return rc;
        im->module_name = copy_name(mod, mod_len);
        im->name = copy_name(name, name_len);
        def->import_count = i + 1;
        if (!im->module_name || !im->name)
            return out_of_memory(d);
        uint8_t kind;
        size_t at = r->pos;
        if ((rc = wasm_read_u8(r, &kind, d->err)))
            return rc;
        switch (kind) {
        case WASM_EXTERN_FUNC:
            im->kind = WASM_EXTERN_FUNC;
            if ((rc = wasm_read_u32(r, &im->index, d->err)) ||
                (rc = add_func(d, func_cap, im->index, true)))
                return rc;
            def->func_import_count++;
            break;
        case WASM_EXTERN_TABLE:
            im->kind = WASM_EXTERN_TABLE;
            if (def->table_count >= WASM_MAX_TABLES)
                return fail(d, at, "too many tables");
            if ((rc = grow(d, (void **)&def->tables, &table_cap, def->table_count + 1,
                           sizeof *def->tables)))
                return rc;
            im->index = def->table_count;
            if ((rc = read_table_type(d, r, &def->tables[def->table_count++])))
                return rc;
            def->table_import_count++;
            break;
        case WASM_EXTERN_MEMORY:
            im->kind = WASM_EXTERN_MEMORY;
            if (def->memory_count >= WASM_MAX_TABLES)
                return fail(d, at, "too many memories");
            if ((rc = grow(d, (void **)&def->memories, &memory_cap, def->memory_count + 1,
                           sizeof *def->memories)))
                return rc;
            im->index = def->memory_count;
            if ((rc = read_limits(d, r, &def->memories[def->memory_count++])))
                return rc;
            def->memory_import_count++;
            break;
        case WASM_EXTERN_GLOBAL:
            im->kind = WASM_EXTERN_GLOBAL;
            if (def->global_count >= WASM_MAX_GLOBALS)
                return fail(d, at, "too many globals");
            if ((rc = grow(d, (void **)&def->globals, &global_cap, def->global_count + 1,
                           sizeof *def->globals)))
                return rc;
            im->index = def->global_count;
            if ((rc = read_global_type(d, r, &def->globals[def->global_count++])))
                return rc;
            def->global_import_count++;
            break;
        default:
            return fail(d, at, "malformed import kind");
        }
    }
    return 0;
}

static int decode_functions(decoder *d, wasm_reader *r, uint32_t *func_cap)
{
    uint32_t n;
    int rc = read_count(d, r, WASM_MAX_FUNCTIONS, 1, "functions", &n);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t type_index;
        if ((rc = wasm_read_u32(r, &type_index, d->err)) ||
            (rc = add_func(d, func_cap, type_index, false)))
            return rc;
    }
    d->func_section_count = n;
    return 0;
}

static int decode_tables(decoder *d, wasm_reader *r)
{
    wasm_module_def *def = d->def;
    uint32_t n;
    int rc = read_count(d, r, WASM_MAX_TABLES, 3, "tables", &n);
    if (rc)
        return rc;
    if ((uint64_t)def->table_count + n > WASM_MAX_TABLES)
        return fail(d, r->pos, "too many tables");
    uint32_t cap = def->table_count;
    if ((rc = grow(d, (void **)&def->tables, &cap, def->table_count + n, sizeof *def->tables)))
        return rc;
    for (uint32_t i = 0; i < n; i++)
        if ((rc = read_table_type(d, r, &def->tables[def->table_count++])))
            return rc;
    return 0;
}

static int decode_memories(decoder *d, wasm_reader *r)
{
    wasm_module_def *def = d->def;
    uint32_t n;
    int rc = read_count(d, r, WASM_MAX_TABLES, 2, "memories", &n);
    if (rc)
        return rc;
    if ((uint64_t)def->memory_count + n > WASM_MAX_TABLES)
        return fail(d, r->pos, "too many memories");
    uint32_t cap = def->memory_count;
    if ((rc = grow(d, (void **)&def->memories, &cap, def->memory_count + n,
                   sizeof *def->memories)))
        return rc;
    for (uint32_t i = 0; i < n; i++)
        if ((rc = read_limits(d, r, &def->memories[def->memory_count++])))
            return rc;
    return 0;
}

static int decode_globals(decoder *d, wasm_reader *r)
{
    wasm_module_def *def = d->def;
    uint32_t n;
    int rc = read_count(d, r, WASM_MAX_GLOBALS, 3, "globals", &n);
    if (rc)
        return rc;
    if ((uint64_t)def->global_count + n > WASM_MAX_GLOBALS)
        return fail(d, r->pos, "too many globals");
    uint32_t cap = def->global_count;
    if ((rc = grow(d, (void **)&def->globals, &cap, def->global_count + n,
                   sizeof *def->globals)))
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        wasm_global_def *g = &def->globals[def->global_count++];
        if ((rc = read_global_type(d, r, g)) ||
            (rc = read_expr(d, r, false, &g->init_offset, &g->init_end)))
            return rc;
    }
    return 0;
}

static int decode_exports(decoder *d, wasm_reader *r)
{
    wasm_module_def *def = d->def;
    uint32_t n;
    int rc = read_count(d, r, WASM_MAX_EXPORTS, 3, "exports", &n);
    if (rc)
        return rc;
    def->exports = calloc(n ? n : 1, sizeof *def->exports);
    if (!def->exports)
        return out_of_memory(d);
    for (uint32_t i = 0; i < n; i++) {
        wasm_export_def *e = &def->exports[i];
        const char *name;
        if ((rc = wasm_read_name(r, &name, &e->name_len, d->err)))
            return rc;
        e->name = copy_name(name, e->name_len);
        def->export_count = i + 1;
        if (!e->name)
            return out_of_memory(d);
        uint8_t kind;
        size_t at = r->pos;
        if ((rc = wasm_read_u8(r, &kind, d->err)))
            return rc;
        if (kind > WASM_EXTERN_GLOBAL)
            return fail(d, at, "malformed export kind");
        e->kind = (wasm_extern_kind)kind;
        if ((rc = wasm_read_u32(r, &e->index, d->err)))
            return rc;
    }
    return 0;
}

/* The function indices of an element segment (the MVP form and kinds 0..3). */
static int read_elem_funcs(decoder *d, wasm_reader *r, wasm_elem_def *e)
{
    int rc = read_count(d, r, WASM_MAX_FUNCTIONS, 1, "segment elements", &e->count);
    if (rc)
        return rc;
    e->func_indices = malloc(((size_t)e->count + 1) * sizeof *e->func_indices);
    if (!e->func_indices)
        return out_of_memory(d);
    for (uint32_t i = 0; i < e->count; i++)
        if ((rc = wasm_read_u32(r, &e->func_indices[i], d->err)))
            return rc;
    return 0;
}

/* The expressions of an element segment (kinds 4..7). */
static int read_elem_exprs(decoder *d, wasm_reader *r, wasm_elem_def *e)
{
    int rc = read_count(d, r, WASM_MAX_FUNCTIONS, 2, "segment elements", &e->count);
    if (rc)
        return rc;
    e->expr_offsets = malloc(((size_t)e->count + 1) * sizeof *e->expr_offsets);
    e->expr_ends = malloc(((size_t)e->count + 1) * sizeof *e->expr_ends);
    if (!e->expr_offsets || !e->expr_ends)
        return out_of_memory(d);
    for (uint32_t i = 0; i < e->count; i++)
        if ((rc = read_expr(d, r, false, &e->expr_offsets[i], &e->expr_ends[i])))
            return rc;
    return 0;
}

static int read_elem_kind(decoder *d, wasm_reader *r, wasm_valtype *out)
{
    uint8_t kind;
    size_t at = r->pos;
    int rc = wasm_read_u8(r, &kind, d->err);
    if (rc)
        return rc;
    if (kind != 0x00)
        return fail(d, at, "malformed element kind");
    *out = WASM_FUNCREF;
    return 0;
}

static int decode_elem(decoder *d, wasm_reader *r, wasm_elem_def *e)
{
    e->type = WASM_FUNCREF;
    int rc;
    if (!d->features->bulk_memory && !d->features->reference_types) {
        /* WebAssembly 1.0: table index, offset, function indices. */
        e->mode = WASM_SEGMENT_ACTIVE;
        if ((rc = wasm_read_u32(r, &e->table_index, d->err)) ||
            (rc = read_expr(d, r, false, &e->offset_expr, &e->offset_end)))
            return rc;
        return read_elem_funcs(d, r, e);
    }
    uint32_t flags;
    size_t at = r->pos;
    if ((rc = wasm_read_u32(r, &flags, d->err)))
        return rc;
    if (flags > 7)
        return fail(d, at, "malformed elements segment kind");
    bool passive_or_declarative = flags & 1;
    bool explicit_table = flags & 2;
    bool exprs = flags & 4;
    if (!passive_or_declarative) {
        e->mode = WASM_SEGMENT_ACTIVE;
        if (explicit_table && (rc = wasm_read_u32(r, &e->table_index, d->err)))
            return rc;
        if ((rc = read_expr(d, r, false, &e->offset_expr, &e->offset_end)))
            return rc;
    } else {
        e->mode = explicit_table ? WASM_SEGMENT_DECLARATIVE : WASM_SEGMENT_PASSIVE;
    }
    /* Kinds 0 and 4 have no type byte: funcref. */
    if (flags != 0 && flags != 4) {
        rc = exprs ? read_reftype(d, r, &e->type) : read_elem_kind(d, r, &e->type);
        if (rc)
            return rc;
    }
    return exprs ? read_elem_exprs(d, r, e) : read_elem_funcs(d, r, e);
}

static int decode_elems(decoder *d, wasm_reader *r)
{
    wasm_module_def *def = d->def;
    uint32_t n;
    int rc = read_count(d, r, WASM_MAX_SEGMENTS, 2, "element segments", &n);
    if (rc)
        return rc;
    def->elems = calloc(n ? n : 1, sizeof *def->elems);
    if (!def->elems)
        return out_of_memory(d);
    for (uint32_t i = 0; i < n; i++) {
        def->elem_count = i + 1;
        if ((rc = decode_elem(d, r, &def->elems[i])))
            return rc;
    }
    return 0;
}

static int decode_data_count(decoder *d, wasm_reader *r)
{
    int rc = wasm_read_u32(r, &d->def->data_count_declared, d->err);
    if (rc)
        return rc;
    if (d->def->data_count_declared > WASM_MAX_SEGMENTS)
        return fail(d, r->pos, "too many data segments");
    d->def->has_data_count = true;
    return 0;
}

static int decode_body(decoder *d, wasm_reader *r, wasm_func_def *f)
{
    uint32_t groups;
    int rc = read_count(d, r, WASM_MAX_LOCALS, 2, "local declarations", &groups);
    if (rc)
        return rc;
    /* First pass: count, so the types array is allocated once. */
    size_t groups_at = r->pos;
    uint64_t total = 0;
    for (uint32_t i = 0; i < groups; i++) {
        uint32_t count;
        wasm_valtype t;
        if ((rc = wasm_read_u32(r, &count, d->err)) || (rc = read_valtype(d, r, &t)))
            return rc;
        total += count;
        if (total > WASM_MAX_LOCALS)
            return fail(d, groups_at, "too many locals");
    }
    d->total_locals += total;
    if (d->total_locals > WASM_MAX_MODULE_LOCALS)
        return fail(d, groups_at, "too many locals (all functions together)");
    f->local_types = malloc(((size_t)total + 1) * sizeof *f->local_types);
    if (!f->local_types)
        return out_of_memory(d);
    f->local_count = (uint32_t)total;
    r->pos = groups_at;
    uint32_t k = 0;
    for (uint32_t i = 0; i < groups; i++) {
        uint32_t count;
        wasm_valtype t;
        (void)wasm_read_u32(r, &count, d->err);
        (void)read_valtype(d, r, &t);
        for (uint32_t j = 0; j < count; j++)
            f->local_types[k++] = t;
    }
    size_t end;
    if ((rc = read_expr(d, r, true, &f->code_offset, &end)))
        return rc;
    f->code_end = end;
    if (r->pos != r->end)
        return fail(d, r->pos, "section size mismatch (bytes after the function's end)");
    return 0;
}

static int decode_code(decoder *d, wasm_reader *r)
{
    wasm_module_def *def = d->def;
    uint32_t n;
    int rc = read_count(d, r, WASM_MAX_FUNCTIONS, 2, "function bodies", &n);
    if (rc)
        return rc;
    if (n != d->func_section_count)
        return fail(d, r->pos, "function and code section have inconsistent lengths");
    def->code_section_offset = r->pos;
    d->has_code = true;
    for (uint32_t i = 0; i < n; i++) {
        wasm_func_def *f = &def->funcs[def->func_import_count + i];
        f->body_offset = r->pos;
        uint32_t size;
        if ((rc = wasm_read_u32(r, &size, d->err)))
            return rc;
        if (size > r->end - r->pos)
            return fail(d, r->pos, "unexpected end of section or function");
        wasm_reader body = {r->data, r->pos, r->pos + size};
        if (size > WASM_MAX_FUNCTION_SIZE)
            return fail(d, r->pos, "function body too large");
        if ((rc = decode_body(d, &body, f)))
            return cx_error_wrap(d->err, "function %u", def->func_import_count + i);
        r->pos = body.end;
    }
    return 0;
}

static int decode_datas(decoder *d, wasm_reader *r)
{
    wasm_module_def *def = d->def;
    uint32_t n;
    int rc = read_count(d, r, WASM_MAX_SEGMENTS, 1, "data segments", &n);
    if (rc)
        return rc;
    if (def->has_data_count && n != def->data_count_declared)
        return fail(d, r->pos, "data count and data section have inconsistent lengths");
    d->has_data = true;
    def->datas = calloc(n ? n : 1, sizeof *def->datas);
    if (!def->datas)
        return out_of_memory(d);
    for (uint32_t i = 0; i < n; i++) {
        wasm_data_def *s = &def->datas[i];
        def->data_count = i + 1;
        uint32_t flags = 0;
        size_t at = r->pos;
        if (d->features->bulk_memory) {
            if ((rc = wasm_read_u32(r, &flags, d->err)))
                return rc;
            if (flags > 2)
                return fail(d, at, "malformed data segment kind");
            if (flags == 2 && (rc = wasm_read_u32(r, &s->memory_index, d->err)))
                return rc;
        } else if ((rc = wasm_read_u32(r, &s->memory_index, d->err))) {
            return rc;
        }
        s->mode = flags == 1 ? WASM_SEGMENT_PASSIVE : WASM_SEGMENT_ACTIVE;
        if (flags != 1 && (rc = read_expr(d, r, false, &s->offset_expr, &s->offset_end)))
            return rc;
        if ((rc = wasm_read_u32(r, &s->size, d->err)))
            return rc;
        if (s->size > r->end - r->pos)
            return fail(d, r->pos, "unexpected end of section or function");
        s->bytes_offset = r->pos;
        r->pos += s->size;
    }
    return 0;
}

static int decode_custom(decoder *d, wasm_reader *r)
{
    const char *name;
    uint32_t len;
    int rc = wasm_read_name(r, &name, &len, d->err);
    if (rc)
        return rc;
    if (len == 4 && memcmp(name, "name", 4) == 0 && d->name_section == 0) {
        d->name_section = r->pos;
        d->name_section_end = r->end;
    }
    r->pos = r->end;
    return 0;
}

/* ---- after the sections ------------------------------------------------- */

/* Function names (subsection 1) from the name section; anything broken
 * makes the whole section ignored. */
static void decode_names(decoder *d)
{
    wasm_module_def *def = d->def;
    if (!d->name_section)
        return;
    wasm_reader r = {def->bytes, d->name_section, d->name_section_end};
    cx_error ignored;
    bool ok = true;
    while (ok && r.pos < r.end) {
        uint8_t id;
        uint32_t size;
        if (wasm_read_u8(&r, &id, &ignored) || wasm_read_u32(&r, &size, &ignored) ||
            size > r.end - r.pos) {
            ok = false;
            break;
        }
        wasm_reader sub = {r.data, r.pos, r.pos + size};
        r.pos += size;
        if (id != 1)
            continue;
        uint32_t n;
        if (wasm_read_u32(&sub, &n, &ignored)) {
            ok = false;
            break;
        }
        for (uint32_t i = 0; i < n; i++) {
            uint32_t index, len;
            const char *name;
            if (wasm_read_u32(&sub, &index, &ignored) ||
                wasm_read_name(&sub, &name, &len, &ignored)) {
                ok = false;
                break;
            }
            if (index < def->func_count && !def->funcs[index].name) {
                def->funcs[index].name = copy_name(name, len);
                if (!def->funcs[index].name) {
                    ok = false;
                    break;
                }
            }
        }
    }
    if (!ok)
        for (uint32_t i = 0; i < def->func_count; i++) {
            free((char *)def->funcs[i].name);
            def->funcs[i].name = NULL;
        }
}

static void declare_funcs_in_expr(wasm_module_def *def, size_t start, size_t end)
{
    wasm_reader r = {def->bytes, start, end};
    wasm_instr in;
    cx_error ignored;
    while (r.pos < r.end && wasm_read_instr(&r, &def->features, &in, &ignored) == 0)
        if (in.opcode == 0xd2 && in.index < def->func_count)
            def->func_declared[in.index] = 1;
}

/* C.refs of the spec: functions named outside function bodies. */
static int collect_declared_funcs(decoder *d)
{
    wasm_module_def *def = d->def;
    def->func_declared = calloc(def->func_count ? def->func_count : 1, 1);
    if (!def->func_declared)
        return out_of_memory(d);
    for (uint32_t i = 0; i < def->export_count; i++)
        if (def->exports[i].kind == WASM_EXTERN_FUNC && def->exports[i].index < def->func_count)
            def->func_declared[def->exports[i].index] = 1;
    for (uint32_t i = def->global_import_count; i < def->global_count; i++)
        declare_funcs_in_expr(def, def->globals[i].init_offset, def->globals[i].init_end);
    for (uint32_t i = 0; i < def->elem_count; i++) {
        const wasm_elem_def *e = &def->elems[i];
        for (uint32_t k = 0; k < e->count; k++) {
            if (e->func_indices && e->func_indices[k] < def->func_count)
                def->func_declared[e->func_indices[k]] = 1;
            if (e->expr_offsets)
                declare_funcs_in_expr(def, e->expr_offsets[k], e->expr_ends[k]);
        }
    }
    return 0;
}

/* ---- the module --------------------------------------------------------- */

static int decode_section(decoder *d, int id, wasm_reader *r, uint32_t *func_cap)
{
    switch (id) {
    case SEC_CUSTOM: return decode_custom(d, r);
    case SEC_TYPE: return decode_types(d, r);
    case SEC_IMPORT: return decode_imports(d, r, func_cap);
    case SEC_FUNCTION: return decode_functions(d, r, func_cap);
    case SEC_TABLE: return decode_tables(d, r);
    case SEC_MEMORY: return decode_memories(d, r);
    case SEC_GLOBAL: return decode_globals(d, r);
    case SEC_EXPORT: return decode_exports(d, r);
    case SEC_START:
        d->def->has_start = true;
        return wasm_read_u32(r, &d->def->start, d->err);
    case SEC_ELEMENT: return decode_elems(d, r);
    case SEC_CODE: return decode_code(d, r);
    case SEC_DATA: return decode_datas(d, r);
    case SEC_DATA_COUNT: return decode_data_count(d, r);
    default: return CX_EINTERNAL;
    }
}

static int decode_module(decoder *d)
{
    wasm_module_def *def = d->def;
    wasm_reader r = {def->bytes, 0, def->size};
    static const uint8_t magic[4] = {0x00, 0x61, 0x73, 0x6d};
    static const uint8_t version[4] = {0x01, 0x00, 0x00, 0x00};
    if (def->size < 4 || memcmp(def->bytes, magic, 4) != 0)
        return fail(d, 0, "magic header not detected");
    if (def->size < 8 || memcmp(def->bytes + 4, version, 4) != 0)
        return fail(d, 4, "unknown binary version");
    r.pos = 8;
    int last_rank = 0;
    uint32_t func_cap = 0;
    while (r.pos < r.end) {
        size_t section_at = r.pos;
        uint8_t id;
        uint32_t size;
        int rc = wasm_read_u8(&r, &id, d->err);
        if (rc)
            return rc;
        if (id > SEC_DATA_COUNT || (id == SEC_DATA_COUNT && !d->features->bulk_memory))
            return fail(d, section_at, "malformed section id");
        if ((rc = wasm_read_u32(&r, &size, d->err)))
            return cx_error_wrap(d->err, "%s section", section_names[id]);
        if (size > r.end - r.pos)
            return cx_error_set(d->err, CX_EPARSE,
                                "%s section: unexpected end (section size mismatch: %u bytes "
                                "declared, %zu left) at offset %zu",
                                section_names[id], size, r.end - r.pos, section_at);
        if (id != SEC_CUSTOM) {
            if (section_rank[id] <= last_rank)
                return cx_error_set(d->err, CX_EPARSE,
                                    "unexpected content after last section: %s section out "
                                    "of order at offset %zu",
                                    section_names[id], section_at);
            last_rank = section_rank[id];
        }
        wasm_reader sec = {def->bytes, r.pos, r.pos + size};
        if ((rc = decode_section(d, id, &sec, &func_cap)))
            return cx_error_wrap(d->err, "%s section", section_names[id]);
        if (sec.pos != sec.end)
            return cx_error_set(d->err, CX_EPARSE,
                                "%s section: section size mismatch at offset %zu",
                                section_names[id], sec.pos);
        r.pos = sec.end;
    }
    if (d->func_section_count > 0 && !d->has_code)
        return fail(d, r.pos, "function and code section have inconsistent lengths");
    if (d->uses_data_index && d->has_data)
        return fail(d, d->uses_data_at, "data count section required");
    if (def->has_data_count && !d->has_data && def->data_count_declared != 0)
        return fail(d, r.pos, "data count and data section have inconsistent lengths");
    decode_names(d);
    return collect_declared_funcs(d);
}

wasm_module_def *wasm_decode(const uint8_t *bytes, size_t len, const wasm_features *features,
                             cx_error *err)
{
    if (len > WASM_MAX_MODULE_SIZE) {
        cx_error_set(err, CX_ETOOBIG, "module of %zu bytes is over the limit of %u", len,
                     WASM_MAX_MODULE_SIZE);
        return NULL;
    }
    wasm_module_def *def = calloc(1, sizeof *def);
    if (!def || !(def->bytes = malloc(len ? len : 1))) {
        free(def);
        cx_error_set(err, CX_ENOMEM, "out of memory decoding the module");
        return NULL;
    }
    if (len)
        memcpy(def->bytes, bytes, len);
    def->size = len;
    def->features = *features;
    decoder d = {.def = def, .features = &def->features, .err = err};
    if (decode_module(&d) != 0) {
        wasm_module_def_free(def);
        return NULL;
    }
    return def;
}

void wasm_module_def_free(wasm_module_def *def)
{
    if (!def)
        return;
    for (uint32_t i = 0; i < def->type_count; i++)
        free(def->types[i].types);
    free(def->types);
    for (uint32_t i = 0; i < def->import_count; i++) {
        free((char *)def->imports[i].module_name);
        free((char *)def->imports[i].name);
    }
    free(def->imports);
    for (uint32_t i = 0; i < def->func_count; i++) {
        free(def->funcs[i].local_types);
        free((char *)def->funcs[i].name);
    }
    free(def->funcs);
    free(def->tables);
    free(def->memories);
    free(def->globals);
    for (uint32_t i = 0; i < def->export_count; i++)
        free((char *)def->exports[i].name);
    free(def->exports);
    for (uint32_t i = 0; i < def->elem_count; i++) {
        free(def->elems[i].func_indices);
        free(def->elems[i].expr_offsets);
        free(def->elems[i].expr_ends);
    }
    free(def->elems);
    free(def->datas);
    free(def->func_declared);
    free(def->bytes);
    free(def);
}
