/* Modules: the front of the engine's pipeline (decode -> validate ->
 * compile) and what a caller can ask of a module without running it
 * (imports, exports, and for tools a description: sections, function sizes
 * and the features it uses, found by reading its code again), plus the
 * feature sets and trap wording.
 *
 * A wasm_module is immutable after wasm_module_new and reference counted:
 * each instance holds a reference, so the code it runs outlives the
 * caller's handle. */
#include <stdlib.h>
#include <string.h>

#include "wasm/runtime.h"

wasm_features wasm_features_2_0(void)
{
    return (wasm_features){
        .sign_extension = true,
        .saturating_conversions = true,
        .multi_value = true,
        .bulk_memory = true,
        .reference_types = true,
        .mutable_globals = true,
    };
}

wasm_features wasm_features_1_0(void)
{
    return (wasm_features){.mutable_globals = true};
}

const char *wasm_trap_message(wasm_trap_kind kind)
{
    switch (kind) {
    case WASM_TRAP_NONE:
        return "no trap";
    case WASM_TRAP_UNREACHABLE:
        return "unreachable";
    case WASM_TRAP_MEMORY_OUT_OF_BOUNDS:
        return "out of bounds memory access";
    case WASM_TRAP_TABLE_OUT_OF_BOUNDS:
        return "out of bounds table access";
    case WASM_TRAP_DIVIDE_BY_ZERO:
        return "integer divide by zero";
    case WASM_TRAP_INTEGER_OVERFLOW:
        return "integer overflow";
    case WASM_TRAP_INVALID_CONVERSION:
        return "invalid conversion to integer";
    case WASM_TRAP_UNDEFINED_ELEMENT:
        return "undefined element";
    case WASM_TRAP_UNINITIALIZED_ELEMENT:
        return "uninitialized element";
    case WASM_TRAP_INDIRECT_CALL_MISMATCH:
        return "indirect call type mismatch";
    case WASM_TRAP_CALL_STACK_EXHAUSTED:
        return "call stack exhausted";
    case WASM_TRAP_FUEL_EXHAUSTED:
        return "fuel exhausted";
    case WASM_TRAP_DEADLINE_EXCEEDED:
        return "deadline exceeded";
    case WASM_TRAP_HOST:
        return "host function failed";
    }
    return "unknown trap";
}

static wasm_features features_or_default(const wasm_features *features)
{
    return features ? *features : wasm_features_2_0();
}

int wasm_module_validate(const uint8_t *bytes, size_t len, const wasm_features *features,
                         cx_error *err)
{
    wasm_features f = features_or_default(features);
    wasm_module_def *def = wasm_decode(bytes, len, &f, err);
    if (!def)
        return err && err->code ? err->code : CX_EPARSE;
    int rc = wasm_validate(def, err);
    wasm_module_def_free(def);
    return rc;
}

wasm_module *wasm_module_new(const uint8_t *bytes, size_t len, const wasm_features *features,
                             cx_error *err)
{
    wasm_features f = features_or_default(features);
    wasm_module_def *def = wasm_decode(bytes, len, &f, err);
    if (!def)
        return NULL;
    if (wasm_validate(def, err) < 0) {
        wasm_module_def_free(def);
        return NULL;
    }
    wasm_module *m = calloc(1, sizeof *m);
    uint64_t *hashes = calloc(def->type_count ? def->type_count : 1, sizeof *hashes);
    if (!m || !hashes) {
        free(m);
        free(hashes);
        wasm_module_def_free(def);
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    for (uint32_t i = 0; i < def->type_count; i++) {
        const wasm_functype_def *t = &def->types[i];
        hashes[i] = wasm_functype_hash(t->types, t->param_count, t->types + t->param_count,
                                       t->result_count);
    }
    m->code = wasm_compile(def, err);
    if (!m->code) {
        free(hashes);
        free(m);
        wasm_module_def_free(def);
        return NULL;
    }
    m->refs = 1;
    m->def = def;
    m->type_hashes = hashes;
    return m;
}

wasm_module *wasm_module_ref(wasm_module *m)
{
    if (m)
        m->refs++;
    return m;
}

void wasm_module_unref(wasm_module *m)
{
    if (!m || --m->refs > 0)
        return;
    wasm_compile_free(m->code, m->def->func_count - m->def->func_import_count);
    free(m->type_hashes);
    wasm_module_def_free(m->def);
    free(m);
}

size_t wasm_module_import_count(const wasm_module *m)
{
    return m->def->import_count;
}

/* The type of entry `index` of a kind's index space. */
static void describe(const wasm_module_def *def, wasm_extern_kind kind, uint32_t index,
                     bool imported_func_type, wasm_externtype *type)
{
    memset(type, 0, sizeof *type);
    type->kind = kind;
    switch (kind) {
    case WASM_EXTERN_FUNC: {
        const wasm_functype_def *t =
            imported_func_type ? &def->types[index] : wasm_func_type_def(def, index);
        type->func = (wasm_functype){t->param_count, t->result_count, t->types,
                                     t->types + t->param_count};
        break;
    }
    case WASM_EXTERN_TABLE:
        type->table_type = def->tables[index].elem_type;
        type->limits = def->tables[index].limits;
        break;
    case WASM_EXTERN_MEMORY:
        type->limits = def->memories[index];
        break;
    case WASM_EXTERN_GLOBAL:
        type->global_type = def->globals[index].type;
        type->global_mutable = def->globals[index].mutable_;
        break;
    }
}

void wasm_module_import(const wasm_module *m, size_t index, const char **module_name,
                        const char **name, wasm_externtype *type)
{
    const wasm_import_def *imp = &m->def->imports[index];
    if (module_name)
        *module_name = imp->module_name;
    if (name)
        *name = imp->name;
    if (type)
        describe(m->def, imp->kind, imp->index, true, type);
}

size_t wasm_module_export_count(const wasm_module *m)
{
    return m->def->export_count;
}

void wasm_module_export(const wasm_module *m, size_t index, const char **name,
                        wasm_externtype *type)
{
    const wasm_export_def *e = &m->def->exports[index];
    if (name)
        *name = e->name;
    if (type)
        describe(m->def, e->kind, e->index, false, type);
}

uint32_t wasm_module_export_index(const wasm_module *m, size_t index)
{
    return m->def->exports[index].index;
}

void wasm_module_table(const wasm_module *m, uint32_t index, wasm_externtype *out)
{
    describe(m->def, WASM_EXTERN_TABLE, index, false, out);
}

void wasm_module_function(const wasm_module *m, uint32_t index, wasm_function_info *out)
{
    const wasm_func_def *f = &m->def->funcs[index];
    const wasm_functype_def *t = wasm_func_type_def(m->def, index);
    *out = (wasm_function_info){
        .imported = f->imported,
        .type = {t->param_count, t->result_count, t->types, t->types + t->param_count},
        .name = f->name,
        .local_count = f->imported ? 0 : f->local_count,
        .body_size = f->imported ? 0 : f->code_end - f->body_offset,
    };
}

static const char *const section_names[WASM_SECTION_ID_COUNT] = {
    "custom", "type", "import", "function", "table", "memory", "global",
    "export", "start", "element", "code", "data", "data count",
};

bool wasm_module_next_section(const wasm_module *m, size_t *cursor, wasm_section_info *out)
{
    const wasm_module_def *def = m->def;
    /* The decoder accepted every section header, so these reads succeed;
     * a failure still ends the walk rather than reading past the end. */
    wasm_reader r = {def->bytes, *cursor < 8 ? 8 : *cursor, def->size};
    cx_error err;
    uint8_t id;
    uint32_t size;
    size_t at = r.pos;
    if (r.pos >= r.end || wasm_read_u8(&r, &id, &err) || id >= WASM_SECTION_ID_COUNT ||
        wasm_read_u32(&r, &size, &err) || size > r.end - r.pos)
        return false;
    *out = (wasm_section_info){.id = id, .name = section_names[id],
                               .name_len = (uint32_t)strlen(section_names[id]),
                               .offset = at, .size = size};
    if (id == 0) {
        wasm_reader name = {def->bytes, r.pos, r.pos + size};
        if (wasm_read_name(&name, &out->name, &out->name_len, &err) < 0) {
            out->name = "";
            out->name_len = 0;
        }
    }
    *cursor = r.pos + size;
    return true;
}

/* ---- which features a module uses ----------------------------------------- */

/* Value types MVP did not have as values: funcref outside tables, externref. */
static bool is_reference(wasm_valtype t)
{
    return t == WASM_FUNCREF || t == WASM_EXTERNREF;
}

static void note_instruction(const wasm_module_def *def, const wasm_instr *in,
                             wasm_features *used)
{
    uint32_t op = in->opcode;
    if (op >= 0xc0 && op <= 0xc4)
        used->sign_extension = true;
    else if (op >= 0xfc00 && op <= 0xfc07)
        used->saturating_conversions = true;
    else if (op >= 0xfc08 && op <= 0xfc0e)
        used->bulk_memory = true; /* memory.init .. table.copy */
    if ((op >= 0xfc0f && op <= 0xfc11) || op == 0x25 || op == 0x26 || op == 0x1c ||
        (op >= 0xd0 && op <= 0xd2))
        used->reference_types = true; /* table.grow/size/fill, table.get/set, select t, ref.* */
    if ((op == 0x11 || op == 0xfc0c || op == 0xfc0e) && in->index2 != 0)
        used->reference_types = true; /* a table other than 0 */
    if ((op == 0x02 || op == 0x03 || op == 0x04) && in->block_type >= 0) {
        const wasm_functype_def *t = &def->types[in->block_type];
        used->multi_value = true; /* type-indexed block types came with multi-value */
        for (uint32_t i = 0; i < t->param_count + t->result_count; i++)
            if (is_reference(t->types[i]))
                used->reference_types = true;
    } else if ((op == 0x02 || op == 0x03 || op == 0x04) && in->block_type != WASM_BLOCKTYPE_EMPTY &&
               is_reference((wasm_valtype)(in->block_type + 0x80))) {
        used->reference_types = true;
    }
}

/* Reads instructions from offset to end (a function body or a constant
 * expression). The module was decoded with these features, so reading
 * succeeds; a failure just ends the scan. */
static void scan_code(const wasm_module_def *def, size_t offset, size_t end, wasm_features *used)
{
    wasm_reader r = {def->bytes, offset, end};
    wasm_instr in;
    cx_error err;
    while (r.pos < r.end && wasm_read_instr(&r, &def->features, &in, &err) == 0)
        note_instruction(def, &in, used);
}

static void scan_segments(const wasm_module_def *def, wasm_features *used)
{
    for (uint32_t i = 0; i < def->elem_count; i++) {
        const wasm_elem_def *e = &def->elems[i];
        if (e->mode == WASM_SEGMENT_PASSIVE)
            used->bulk_memory = true;
        if (e->mode == WASM_SEGMENT_DECLARATIVE || e->type == WASM_EXTERNREF ||
            (e->mode == WASM_SEGMENT_ACTIVE && e->table_index != 0))
            used->reference_types = true;
        if (e->expr_offsets)
            for (uint32_t j = 0; j < e->count; j++)
                scan_code(def, e->expr_offsets[j], e->expr_ends[j], used);
    }
    for (uint32_t i = 0; i < def->data_count; i++)
        if (def->datas[i].mode == WASM_SEGMENT_PASSIVE)
            used->bulk_memory = true;
    if (def->has_data_count)
        used->bulk_memory = true;
}

static wasm_features features_used(const wasm_module_def *def)
{
    wasm_features used = {0};
    for (uint32_t i = 0; i < def->type_count; i++) {
        const wasm_functype_def *t = &def->types[i];
        if (t->result_count > 1)
            used.multi_value = true;
        for (uint32_t j = 0; j < t->param_count + t->result_count; j++)
            if (is_reference(t->types[j]))
                used.reference_types = true;
    }
    if (def->table_count > 1)
        used.reference_types = true;
    for (uint32_t i = 0; i < def->table_count; i++)
        if (def->tables[i].elem_type == WASM_EXTERNREF)
            used.reference_types = true;
    for (uint32_t i = 0; i < def->global_count; i++) {
        const wasm_global_def *g = &def->globals[i];
        if (is_reference(g->type))
            used.reference_types = true;
        if (i >= def->global_import_count)
            scan_code(def, g->init_offset, g->init_end, &used);
    }
    for (uint32_t i = 0; i < def->import_count; i++) {
        const wasm_import_def *imp = &def->imports[i];
        if (imp->kind == WASM_EXTERN_GLOBAL && def->globals[imp->index].mutable_)
            used.mutable_globals = true;
    }
    for (uint32_t i = 0; i < def->export_count; i++) {
        const wasm_export_def *e = &def->exports[i];
        if (e->kind == WASM_EXTERN_GLOBAL && def->globals[e->index].mutable_)
            used.mutable_globals = true;
    }
    scan_segments(def, &used);
    for (uint32_t i = def->func_import_count; i < def->func_count; i++) {
        const wasm_func_def *f = &def->funcs[i];
        for (uint32_t j = 0; j < f->local_count; j++)
            if (is_reference(f->local_types[j]))
                used.reference_types = true;
        scan_code(def, f->code_offset, f->code_end, &used);
    }
    return used;
}

void wasm_module_describe(const wasm_module *m, wasm_module_info *out)
{
    const wasm_module_def *def = m->def;
    memset(out, 0, sizeof *out);
    out->type_count = def->type_count;
    out->func_count = def->func_count;
    out->func_import_count = def->func_import_count;
    out->table_count = def->table_count;
    out->memory_count = def->memory_count;
    out->global_count = def->global_count;
    out->import_count = def->import_count;
    out->export_count = def->export_count;
    out->elem_count = def->elem_count;
    out->data_count = def->data_count;
    out->has_start = def->has_start;
    out->start = def->start;
    if (def->memory_count > 0) {
        out->memory_min_pages = def->memories[0].min;
        out->memory_max_pages = def->memories[0].max;
        out->memory_has_max = def->memories[0].has_max;
    }
    out->module_size = def->size;
    size_t cursor = 0;
    wasm_section_info s;
    while (wasm_module_next_section(m, &cursor, &s))
        out->section_bytes[s.id] += s.size;
    out->code_size = out->section_bytes[10];
    out->custom_section_bytes = out->section_bytes[0];
    for (uint32_t i = def->func_import_count; i < def->func_count; i++) {
        uint32_t locals = wasm_func_type_def(def, i)->param_count + def->funcs[i].local_count;
        if (locals > out->max_function_locals)
            out->max_function_locals = locals;
    }
    out->features_used = features_used(def);
}
