/* Modules: the front of the engine's pipeline (decode -> validate ->
 * compile) and what a caller can ask of a module without running it
 * (imports, exports), plus the feature sets and trap wording.
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
