/* The run time: stores and what lives in them (functions, memories,
 * tables, globals, instances), linking and instantiation, and calls from
 * the host.
 *
 * A store owns every object created in it, in one list, and frees them all
 * together: objects reference each other freely (an instance's functions
 * sit in another instance's table, a failed instantiation may have written
 * into an imported table), so nothing is freed before the store.
 *
 * Memories are anonymous mappings grown with mremap: untouched pages cost
 * nothing and new pages are zero, so a module declaring a large memory does
 * not make the host commit it. Every memory access is bounds-checked by the
 * interpreter; there are no guard pages to rely on.
 *
 * Instantiation follows WebAssembly 2.0 (with bulk memory enabled): element
 * then data segments are applied in order, each checked before it is
 * written, so a segment out of bounds traps with the earlier ones applied;
 * the start function runs last. Without bulk memory, 1.0's rule applies:
 * every segment is checked first and a misfit is a link error with nothing
 * written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "wasm/runtime.h"

#define OBJECT_INSTANCE ((wasm_extern_kind)-1)

/* ---- values and types ----------------------------------------------------- */

uint64_t wasm_value_to_slot(const wasm_value *v)
{
    switch (v->type) {
    case WASM_I32:
        return v->of.i32;
    case WASM_F32:
        return v->of.f32;
    case WASM_I64:
        return v->of.i64;
    case WASM_F64:
        return v->of.f64;
    case WASM_FUNCREF:
        return (uint64_t)(uintptr_t)v->of.func;
    case WASM_EXTERNREF:
        return (uint64_t)(uintptr_t)(v->of.ext + 1); /* null (UINTPTR_MAX) -> 0 */
    default:
        return 0;
    }
}

wasm_value wasm_value_from_slot(wasm_valtype type, uint64_t slot)
{
    wasm_value v;
    memset(&v, 0, sizeof v);
    v.type = type;
    switch (type) {
    case WASM_I32:
        v.of.i32 = (uint32_t)slot;
        break;
    case WASM_F32:
        v.of.f32 = (uint32_t)slot;
        break;
    case WASM_I64:
        v.of.i64 = slot;
        break;
    case WASM_F64:
        v.of.f64 = slot;
        break;
    case WASM_FUNCREF:
        v.of.func = (wasm_func *)(uintptr_t)slot;
        break;
    case WASM_EXTERNREF:
        v.of.ext = (uintptr_t)slot - 1;
        break;
    default:
        break;
    }
    return v;
}

static uint64_t hash_bytes(uint64_t h, const wasm_valtype *types, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        h ^= (uint8_t)types[i];
        h *= 0x100000001b3u;
    }
    return h;
}

uint64_t wasm_functype_hash(const wasm_valtype *params, uint32_t param_count,
                            const wasm_valtype *results, uint32_t result_count)
{
    uint64_t h = 0xcbf29ce484222325u;
    h = hash_bytes(h, params, param_count);
    h ^= 0xff; /* separator: (i32)->() differs from ()->(i32) */
    h *= 0x100000001b3u;
    return hash_bytes(h, results, result_count);
}

bool wasm_functype_equal(const wasm_functype *a, const wasm_functype *b)
{
    if (a->param_count != b->param_count || a->result_count != b->result_count)
        return false;
    for (uint32_t i = 0; i < a->param_count; i++)
        if (a->params[i] != b->params[i])
            return false;
    for (uint32_t i = 0; i < a->result_count; i++)
        if (a->results[i] != b->results[i])
            return false;
    return true;
}

static wasm_functype functype_of_def(const wasm_functype_def *d)
{
    return (wasm_functype){d->param_count, d->result_count, d->types, d->types + d->param_count};
}

void wasm_trap_set(wasm_trap *trap, wasm_trap_kind kind, const char *message)
{
    if (!trap)
        return;
    memset(trap, 0, sizeof *trap);
    trap->kind = kind;
    snprintf(trap->message, sizeof trap->message, "%s", message);
}

/* ---- stores --------------------------------------------------------------- */

wasm_store *wasm_store_new(const wasm_limits *limits)
{
    wasm_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (limits)
        s->limits = *limits;
    if (!s->limits.max_memory_pages || s->limits.max_memory_pages > WASM_MAX_PAGES)
        s->limits.max_memory_pages = WASM_MAX_PAGES;
    if (!s->limits.max_table_elements)
        s->limits.max_table_elements = WASM_DEFAULT_MAX_TABLE;
    if (!s->limits.max_call_depth)
        s->limits.max_call_depth = WASM_DEFAULT_CALL_DEPTH;
    if (!s->limits.max_stack_values)
        s->limits.max_stack_values = WASM_DEFAULT_STACK_VALUES;
    return s;
}

static bool store_add(wasm_store *s, wasm_extern_kind kind, void *ptr)
{
    if (s->object_count == s->object_cap) {
        size_t cap = s->object_cap ? s->object_cap * 2 : 16;
        wasm_object *objects = realloc(s->objects, cap * sizeof *objects);
        if (!objects)
            return false;
        s->objects = objects;
        s->object_cap = cap;
    }
    s->objects[s->object_count++] = (wasm_object){kind, ptr};
    return true;
}

static void memory_free(wasm_memory *m)
{
    if (m->data)
        munmap(m->data, m->size);
    free(m);
}

static void instance_free(wasm_instance *inst)
{
    if (inst->elems) {
        for (uint32_t i = 0; i < inst->module->def->elem_count; i++)
            free(inst->elems[i].refs);
    }
    free(inst->elems);
    free(inst->datas);
    free(inst->funcs);
    free(inst->tables);
    free(inst->globals);
    wasm_module_unref(inst->module);
    free(inst);
}

void wasm_store_free(wasm_store *s)
{
    if (!s)
        return;
    for (size_t i = s->object_count; i-- > 0;) {
        void *p = s->objects[i].ptr;
        switch (s->objects[i].kind) {
        case WASM_EXTERN_FUNC:
            free(((wasm_func *)p)->owned_types);
            free(p);
            break;
        case WASM_EXTERN_MEMORY:
            memory_free(p);
            break;
        case WASM_EXTERN_TABLE:
            free(((wasm_table *)p)->elems);
            free(p);
            break;
        case WASM_EXTERN_GLOBAL:
            free(p);
            break;
        default:
            instance_free(p);
            break;
        }
    }
    free(s->objects);
    free(s->stack);
    free(s->frames);
    free(s);
}

void wasm_store_set_fuel(wasm_store *s, uint64_t fuel)
{
    s->fuel_limit = fuel;
    s->fuel_used = 0;
}

uint64_t wasm_store_fuel_used(const wasm_store *s)
{
    return s->fuel_used;
}

void wasm_store_set_deadline(wasm_store *s, uint64_t monotonic_ns)
{
    s->deadline_ns = monotonic_ns;
}

/* ---- functions, memories, tables, globals ---------------------------------- */

wasm_func *wasm_func_new_host(wasm_store *s, const wasm_functype *type, wasm_host_fn fn,
                              void *env)
{
    if (!s || !type || !fn)
        return NULL;
    wasm_func *f = calloc(1, sizeof *f);
    size_t n = (size_t)type->param_count + type->result_count;
    wasm_valtype *types = malloc((n ? n : 1) * sizeof *types);
    if (!f || !types || !store_add(s, WASM_EXTERN_FUNC, f)) {
        free(f);
        free(types);
        return NULL;
    }
    if (type->param_count)
        memcpy(types, type->params, type->param_count * sizeof *types);
    if (type->result_count)
        memcpy(types + type->param_count, type->results, type->result_count * sizeof *types);
    f->owned_types = types;
    f->type = (wasm_functype){type->param_count, type->result_count, types,
                              types + type->param_count};
    f->type_hash = wasm_functype_hash(f->type.params, f->type.param_count, f->type.results,
                                      f->type.result_count);
    f->host = fn;
    f->env = env;
    return f;
}

static wasm_memory *memory_create(wasm_store *s, wasm_limits_decl limits, cx_error *err)
{
    if (limits.min > s->limits.max_memory_pages) {
        cx_error_set(err, CX_ELIMIT,
                     "memory of %u pages refused: the limit is %u pages (64 KiB each)",
                     limits.min, s->limits.max_memory_pages);
        return NULL;
    }
    if (limits.has_max && limits.max < limits.min) {
        cx_error_set(err, CX_EINVAL, "size minimum must not be greater than maximum");
        return NULL;
    }
    wasm_memory *m = calloc(1, sizeof *m);
    if (!m) {
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    m->has_max = limits.has_max;
    m->max_pages = limits.has_max ? limits.max : WASM_MAX_PAGES;
    m->limit_pages = s->limits.max_memory_pages;
    if (limits.min) {
        size_t size = (size_t)limits.min * WASM_PAGE_SIZE;
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            free(m);
            cx_error_set(err, CX_ENOMEM, "cannot map a memory of %u pages", limits.min);
            return NULL;
        }
        m->data = p;
        m->size = size;
        m->pages = limits.min;
    }
    if (!store_add(s, WASM_EXTERN_MEMORY, m)) {
        memory_free(m);
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    return m;
}

wasm_memory *wasm_memory_new(wasm_store *s, wasm_limits_decl limits, cx_error *err)
{
    return memory_create(s, limits, err);
}

int64_t wasm_memory_grow(wasm_memory *m, uint32_t delta)
{
    if (!m)
        return -1;
    uint64_t old = m->pages;
    uint64_t pages = old + delta;
    if (pages > m->max_pages || pages > m->limit_pages || pages > WASM_MAX_PAGES)
        return -1;
    if (delta == 0)
        return (int64_t)old;
    size_t size = (size_t)pages * WASM_PAGE_SIZE;
    void *p;
    if (!m->data)
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
    else
        p = mremap(m->data, m->size, size, MREMAP_MAYMOVE);
    if (p == MAP_FAILED)
        return -1;
    m->data = p;
    m->size = size;
    m->pages = (uint32_t)pages;
    return (int64_t)old;
}

static wasm_table *table_create(wasm_store *s, wasm_valtype type, wasm_limits_decl limits,
                                cx_error *err)
{
    if (limits.min > s->limits.max_table_elements) {
        cx_error_set(err, CX_ELIMIT, "table of %u elements refused: the limit is %u", limits.min,
                     s->limits.max_table_elements);
        return NULL;
    }
    if (limits.min > s->limits.max_table_elements - s->table_elements) {
        cx_error_set(err, CX_ELIMIT,
                     "table of %u elements refused: the store's tables would exceed %u elements",
                     limits.min, s->limits.max_table_elements);
        return NULL;
    }
    wasm_table *t = calloc(1, sizeof *t);
    uint64_t *elems = calloc(limits.min ? limits.min : 1, sizeof *elems);
    if (!t || !elems || !store_add(s, WASM_EXTERN_TABLE, t)) {
        free(t);
        free(elems);
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    t->type = type;
    t->size = limits.min;
    t->has_max = limits.has_max;
    t->max = limits.has_max ? limits.max : UINT32_MAX;
    t->limit = s->limits.max_table_elements;
    t->elems = elems;
    s->table_elements += limits.min;
    return t;
}

wasm_table *wasm_table_new(wasm_store *s, wasm_valtype type, wasm_limits_decl limits,
                           cx_error *err)
{
    if (type != WASM_FUNCREF && type != WASM_EXTERNREF) {
        cx_error_set(err, CX_EINVAL, "a table holds funcref or externref");
        return NULL;
    }
    return table_create(s, type, limits, err);
}

bool wasm_table_can_grow(const wasm_store *s, const wasm_table *t, uint32_t delta)
{
    uint64_t size = (uint64_t)t->size + delta;
    return size <= t->max && size <= t->limit && size <= UINT32_MAX &&
           s->table_elements + delta <= s->limits.max_table_elements;
}

int64_t wasm_table_grow(wasm_store *s, wasm_table *t, uint32_t delta, uint64_t init)
{
    uint64_t old = t->size;
    uint64_t size = old + delta;
    if (!wasm_table_can_grow(s, t, delta))
        return -1;
    if (delta == 0)
        return (int64_t)old;
    uint64_t *elems = realloc(t->elems, (size_t)size * sizeof *elems);
    if (!elems)
        return -1;
    for (uint64_t i = old; i < size; i++)
        elems[i] = init;
    t->elems = elems;
    t->size = (uint32_t)size;
    s->table_elements += delta;
    return (int64_t)old;
}

static wasm_global *global_create(wasm_store *s, wasm_valtype type, bool mutable_,
                                  uint64_t value)
{
    wasm_global *g = calloc(1, sizeof *g);
    if (!g || !store_add(s, WASM_EXTERN_GLOBAL, g)) {
        free(g);
        return NULL;
    }
    g->type = type;
    g->mutable_ = mutable_;
    g->value = value;
    return g;
}

wasm_global *wasm_global_new(wasm_store *s, wasm_value value, bool mutable_, cx_error *err)
{
    wasm_global *g = global_create(s, value.type, mutable_, wasm_value_to_slot(&value));
    if (!g)
        cx_error_set(err, CX_ENOMEM, "out of memory");
    return g;
}

/* ---- instantiation -------------------------------------------------------- */

/* Evaluates a constant expression (validated: one value). */
static int eval_const(const wasm_instance *inst, size_t offset, size_t end, uint64_t *out,
                      cx_error *err)
{
    const wasm_module_def *def = inst->module->def;
    wasm_reader r = {def->bytes, offset, end};
    uint8_t op;
    uint32_t index;
    int rc;
    *out = 0;
    for (;;) {
        if ((rc = wasm_read_u8(&r, &op, err)) < 0)
            return rc;
        switch (op) {
        case 0x0b:
            return 0;
        case 0x41: {
            int32_t v;
            if ((rc = wasm_read_s32(&r, &v, err)) < 0)
                return rc;
            *out = (uint32_t)v;
            break;
        }
        case 0x42: {
            int64_t v;
            if ((rc = wasm_read_s64(&r, &v, err)) < 0)
                return rc;
            *out = (uint64_t)v;
            break;
        }
        case 0x43: {
            uint32_t bits;
            if ((rc = wasm_read_f32(&r, &bits, err)) < 0)
                return rc;
            *out = bits;
            break;
        }
        case 0x44:
            if ((rc = wasm_read_f64(&r, out, err)) < 0)
                return rc;
            break;
        case 0x23:
            if ((rc = wasm_read_u32(&r, &index, err)) < 0)
                return rc;
            if (index >= def->global_count || !inst->globals[index])
                return cx_error_set(err, CX_EINVAL, "unknown global %u in a constant", index);
            *out = inst->globals[index]->value;
            break;
        case 0xd0:
            if ((rc = wasm_read_u8(&r, &op, err)) < 0)
                return rc;
            *out = 0;
            break;
        case 0xd2:
            if ((rc = wasm_read_u32(&r, &index, err)) < 0)
                return rc;
            if (index >= def->func_count)
                return cx_error_set(err, CX_EINVAL, "unknown function %u in a constant", index);
            *out = (uint64_t)(uintptr_t)inst->funcs[index];
            break;
        default:
            return cx_error_set(err, CX_EINVAL, "constant expression required");
        }
    }
}

static int link_error(cx_error *err, int code, const wasm_import_def *imp, const char *why)
{
    return cx_error_set(err, code, "%s: import \"%s\" \"%s\"", why, imp->module_name,
                        imp->name);
}

static bool limits_match(uint64_t actual_min, bool actual_has_max, uint64_t actual_max,
                         const wasm_limits_decl *want)
{
    if (actual_min < want->min)
        return false;
    if (want->has_max && (!actual_has_max || actual_max > want->max))
        return false;
    return true;
}

static int link_imports(wasm_instance *inst, const wasm_extern *imports, size_t import_count,
                        cx_error *err)
{
    const wasm_module_def *def = inst->module->def;
    uint32_t funcs = 0, tables = 0, memories = 0, globals = 0;
    for (uint32_t i = 0; i < def->import_count; i++) {
        const wasm_import_def *imp = &def->imports[i];
        const wasm_extern *ext = i < import_count ? &imports[i] : NULL;
        bool present = ext && ((ext->kind == WASM_EXTERN_FUNC && ext->of.func) ||
                               (ext->kind == WASM_EXTERN_TABLE && ext->of.table) ||
                               (ext->kind == WASM_EXTERN_MEMORY && ext->of.memory) ||
                               (ext->kind == WASM_EXTERN_GLOBAL && ext->of.global));
        if (!present)
            return link_error(err, CX_ENOTFOUND, imp, "unknown import");
        if (ext->kind != imp->kind)
            return link_error(err, CX_EINVAL, imp, "incompatible import type");
        switch (imp->kind) {
        case WASM_EXTERN_FUNC: {
            if (imp->index >= def->type_count)
                return link_error(err, CX_EINVAL, imp, "unknown type");
            wasm_functype want = functype_of_def(&def->types[imp->index]);
            if (!wasm_functype_equal(&ext->of.func->type, &want))
                return link_error(err, CX_EINVAL, imp, "incompatible import type");
            inst->funcs[funcs++] = ext->of.func;
            break;
        }
        case WASM_EXTERN_TABLE: {
            const wasm_table_def *want = &def->tables[imp->index];
            const wasm_table *t = ext->of.table;
            if (t->type != want->elem_type ||
                !limits_match(t->size, t->has_max, t->max, &want->limits))
                return link_error(err, CX_EINVAL, imp, "incompatible import type");
            inst->tables[tables++] = ext->of.table;
            break;
        }
        case WASM_EXTERN_MEMORY: {
            const wasm_limits_decl *want = &def->memories[imp->index];
            const wasm_memory *m = ext->of.memory;
            if (!limits_match(m->pages, m->has_max, m->max_pages, want))
                return link_error(err, CX_EINVAL, imp, "incompatible import type");
            if (memories++ == 0)
                inst->memory = ext->of.memory;
            break;
        }
        case WASM_EXTERN_GLOBAL: {
            const wasm_global_def *want = &def->globals[imp->index];
            const wasm_global *g = ext->of.global;
            if (g->type != want->type || g->mutable_ != want->mutable_)
                return link_error(err, CX_EINVAL, imp, "incompatible import type");
            inst->globals[globals++] = ext->of.global;
            break;
        }
        }
    }
    return 0;
}

static int create_definitions(wasm_instance *inst, cx_error *err)
{
    wasm_store *s = inst->store;
    const wasm_module_def *def = inst->module->def;
    for (uint32_t i = def->func_import_count; i < def->func_count; i++) {
        wasm_func *f = calloc(1, sizeof *f);
        if (!f || !store_add(s, WASM_EXTERN_FUNC, f)) {
            free(f);
            return cx_error_set(err, CX_ENOMEM, "out of memory");
        }
        f->type = functype_of_def(wasm_func_type_def(def, i));
        f->type_hash = inst->module->type_hashes[def->funcs[i].type_index];
        f->inst = inst;
        f->code = &inst->module->code[i - def->func_import_count];
        inst->funcs[i] = f;
    }
    for (uint32_t i = def->table_import_count; i < def->table_count; i++) {
        inst->tables[i] = table_create(s, def->tables[i].elem_type, def->tables[i].limits, err);
        if (!inst->tables[i])
            return err ? err->code : CX_ENOMEM;
    }
    if (def->memory_import_count == 0 && def->memory_count > 0) {
        inst->memory = memory_create(s, def->memories[0], err);
        if (!inst->memory)
            return err ? err->code : CX_ENOMEM;
    }
    for (uint32_t i = def->global_import_count; i < def->global_count; i++) {
        const wasm_global_def *g = &def->globals[i];
        uint64_t value;
        int rc = eval_const(inst, g->init_offset, g->init_end, &value, err);
        if (rc < 0)
            return rc;
        inst->globals[i] = global_create(s, g->type, g->mutable_, value);
        if (!inst->globals[i])
            return cx_error_set(err, CX_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < def->elem_count; i++) {
        const wasm_elem_def *e = &def->elems[i];
        wasm_segment *seg = &inst->elems[i];
        seg->refs = calloc(e->count ? e->count : 1, sizeof *seg->refs);
        if (!seg->refs)
            return cx_error_set(err, CX_ENOMEM, "out of memory");
        for (uint32_t k = 0; k < e->count; k++) {
            if (e->func_indices) {
                if (e->func_indices[k] >= def->func_count)
                    return cx_error_set(err, CX_EINVAL, "unknown function in an element segment");
                seg->refs[k] = (uint64_t)(uintptr_t)inst->funcs[e->func_indices[k]];
            } else {
                int rc = eval_const(inst, e->expr_offsets[k], e->expr_ends[k], &seg->refs[k], err);
                if (rc < 0)
                    return rc;
            }
        }
        seg->size = e->count;
    }
    for (uint32_t i = 0; i < def->data_count; i++) {
        inst->datas[i].bytes = def->bytes + def->datas[i].bytes_offset;
        inst->datas[i].size = def->datas[i].size;
    }
    return 0;
}

/* 1.0: every active segment must fit before anything is written. */
static int check_segments_fit(wasm_instance *inst, cx_error *err)
{
    const wasm_module_def *def = inst->module->def;
    for (uint32_t i = 0; i < def->elem_count; i++) {
        const wasm_elem_def *e = &def->elems[i];
        if (e->mode != WASM_SEGMENT_ACTIVE)
            continue;
        uint64_t offset;
        int rc = eval_const(inst, e->offset_expr, e->offset_end, &offset, err);
        if (rc < 0)
            return rc;
        if ((uint64_t)(uint32_t)offset + e->count > inst->tables[e->table_index]->size)
            return cx_error_set(err, CX_EINVAL, "elements segment does not fit");
    }
    for (uint32_t i = 0; i < def->data_count; i++) {
        const wasm_data_def *d = &def->datas[i];
        if (d->mode != WASM_SEGMENT_ACTIVE)
            continue;
        uint64_t offset;
        int rc = eval_const(inst, d->offset_expr, d->offset_end, &offset, err);
        if (rc < 0)
            return rc;
        if (!inst->memory || (uint64_t)(uint32_t)offset + d->size > inst->memory->size)
            return cx_error_set(err, CX_EINVAL, "data segment does not fit");
    }
    return 0;
}

/* Applies active segments in order (table.init/memory.init then drop) and
 * drops declarative ones. -1 with *trap when one does not fit. */
static int apply_segments(wasm_instance *inst, wasm_trap *trap, cx_error *err)
{
    const wasm_module_def *def = inst->module->def;
    for (uint32_t i = 0; i < def->elem_count; i++) {
        const wasm_elem_def *e = &def->elems[i];
        wasm_segment *seg = &inst->elems[i];
        if (e->mode == WASM_SEGMENT_DECLARATIVE) {
            seg->size = 0;
            continue;
        }
        if (e->mode != WASM_SEGMENT_ACTIVE)
            continue;
        uint64_t offset;
        int rc = eval_const(inst, e->offset_expr, e->offset_end, &offset, err);
        if (rc < 0)
            return rc;
        wasm_table *t = inst->tables[e->table_index];
        uint32_t at = (uint32_t)offset;
        if ((uint64_t)at + seg->size > t->size) {
            wasm_trap_set(trap, WASM_TRAP_TABLE_OUT_OF_BOUNDS,
                          wasm_trap_message(WASM_TRAP_TABLE_OUT_OF_BOUNDS));
            return -1;
        }
        if (seg->size)
            memcpy(t->elems + at, seg->refs, seg->size * sizeof *t->elems);
        seg->size = 0;
    }
    for (uint32_t i = 0; i < def->data_count; i++) {
        const wasm_data_def *d = &def->datas[i];
        wasm_segment *seg = &inst->datas[i];
        if (d->mode != WASM_SEGMENT_ACTIVE)
            continue;
        uint64_t offset;
        int rc = eval_const(inst, d->offset_expr, d->offset_end, &offset, err);
        if (rc < 0)
            return rc;
        uint32_t at = (uint32_t)offset;
        uint64_t mem_size = inst->memory ? inst->memory->size : 0;
        if ((uint64_t)at + seg->size > mem_size) {
            wasm_trap_set(trap, WASM_TRAP_MEMORY_OUT_OF_BOUNDS,
                          wasm_trap_message(WASM_TRAP_MEMORY_OUT_OF_BOUNDS));
            return -1;
        }
        if (seg->size)
            memcpy(inst->memory->data + at, seg->bytes, seg->size);
        seg->size = 0;
    }
    return 0;
}

static wasm_instance *instance_alloc(wasm_store *s, wasm_module *m)
{
    const wasm_module_def *def = m->def;
    wasm_instance *inst = calloc(1, sizeof *inst);
    if (!inst)
        return NULL;
    inst->store = s;
    inst->module = wasm_module_ref(m);
    inst->funcs = calloc(def->func_count ? def->func_count : 1, sizeof *inst->funcs);
    inst->tables = calloc(def->table_count ? def->table_count : 1, sizeof *inst->tables);
    inst->globals = calloc(def->global_count ? def->global_count : 1, sizeof *inst->globals);
    inst->elems = calloc(def->elem_count ? def->elem_count : 1, sizeof *inst->elems);
    inst->datas = calloc(def->data_count ? def->data_count : 1, sizeof *inst->datas);
    inst->exports = def->exports;
    inst->export_count = def->export_count;
    if (!inst->funcs || !inst->tables || !inst->globals || !inst->elems || !inst->datas ||
        !store_add(s, OBJECT_INSTANCE, inst)) {
        instance_free(inst);
        return NULL;
    }
    return inst;
}

static bool store_prepare_stack(wasm_store *s)
{
    if (!s->stack)
        s->stack = calloc(s->limits.max_stack_values, sizeof *s->stack);
    if (!s->frames)
        s->frames = calloc((size_t)s->limits.max_call_depth + 1, sizeof *s->frames);
    return s->stack && s->frames;
}

wasm_instance *wasm_instantiate(wasm_store *s, wasm_module *m, const wasm_extern *imports,
                                size_t import_count, wasm_trap *trap, cx_error *err)
{
    if (trap)
        memset(trap, 0, sizeof *trap);
    if (!s || !m) {
        cx_error_set(err, CX_EINVAL, "no store or module");
        return NULL;
    }
    const wasm_module_def *def = m->def;
    if (def->memory_count > 0 && def->memory_import_count == 0 &&
        def->memories[0].min > s->limits.max_memory_pages) {
        cx_error_set(err, CX_ELIMIT,
                     "memory of %u pages refused: the limit is %u pages (64 KiB each)",
                     def->memories[0].min, s->limits.max_memory_pages);
        return NULL;
    }
    wasm_instance *inst = instance_alloc(s, m);
    if (!inst) {
        cx_error_set(err, CX_ENOMEM, "out of memory");
        return NULL;
    }
    /* On failure the instance stays in the store: its functions may already
     * sit in imported tables. */
    if (link_imports(inst, imports, import_count, err) < 0)
        return NULL;
    if (create_definitions(inst, err) < 0)
        return NULL;
    if (!def->features.bulk_memory && check_segments_fit(inst, err) < 0)
        return NULL;
    wasm_trap local_trap;
    if (!trap)
        trap = &local_trap;
    int rc = apply_segments(inst, trap, err);
    if (rc == -1) {
        cx_error_set(err, CX_EINVAL, "instantiation trapped: %s", trap->message);
        return NULL;
    }
    if (rc < 0)
        return NULL;
    if (def->has_start) {
        if (!store_prepare_stack(s)) {
            cx_error_set(err, CX_ENOMEM, "out of memory");
            return NULL;
        }
        if (wasm_exec_call(s, inst->funcs[def->start], trap) != 0) {
            cx_error_set(err, CX_EINVAL, "start function trapped: %s", trap->message);
            return NULL;
        }
    }
    return inst;
}

bool wasm_instance_export(const wasm_instance *inst, const char *name, wasm_extern *out)
{
    return name && wasm_instance_export_n(inst, name, strlen(name), out);
}

bool wasm_instance_export_n(const wasm_instance *inst, const char *name, size_t len,
                            wasm_extern *out)
{
    if (!inst || !name)
        return false;
    for (uint32_t i = 0; i < inst->export_count; i++) {
        const wasm_export_def *e = &inst->exports[i];
        if (e->name_len != len || memcmp(e->name, name, len) != 0)
            continue;
        out->kind = e->kind;
        switch (e->kind) {
        case WASM_EXTERN_FUNC:
            out->of.func = inst->funcs[e->index];
            break;
        case WASM_EXTERN_TABLE:
            out->of.table = inst->tables[e->index];
            break;
        case WASM_EXTERN_MEMORY:
            out->of.memory = inst->memory;
            break;
        case WASM_EXTERN_GLOBAL:
            out->of.global = inst->globals[e->index];
            break;
        }
        return true;
    }
    return false;
}

/* ---- calls and host access ------------------------------------------------- */

static int call_refused(wasm_trap *trap, const char *message)
{
    wasm_trap_set(trap, WASM_TRAP_HOST, message);
    return -1;
}

int wasm_call(wasm_store *s, wasm_func *f, const wasm_value *args, size_t arg_count,
              wasm_value *results, size_t result_count, wasm_trap *trap)
{
    wasm_trap local_trap;
    if (!trap)
        trap = &local_trap;
    memset(trap, 0, sizeof *trap);
    if (!s || !f)
        return call_refused(trap, "no store or function");
    const wasm_functype *type = &f->type;
    if (arg_count != type->param_count)
        return call_refused(trap, "wrong number of arguments");
    if (result_count < type->result_count)
        return call_refused(trap, "too few result slots");
    for (size_t i = 0; i < arg_count; i++)
        if (args[i].type != type->params[i])
            return call_refused(trap, "argument of the wrong type");
    if (!store_prepare_stack(s))
        return call_refused(trap, "out of memory");
    size_t need = type->param_count > type->result_count ? type->param_count
                                                         : type->result_count;
    if (s->stack_used + need > s->limits.max_stack_values) {
        wasm_trap_set(trap, WASM_TRAP_CALL_STACK_EXHAUSTED,
                      wasm_trap_message(WASM_TRAP_CALL_STACK_EXHAUSTED));
        return -1;
    }
    uint64_t *base = s->stack + s->stack_used;
    for (size_t i = 0; i < arg_count; i++)
        base[i] = wasm_value_to_slot(&args[i]);
    if (wasm_exec_call(s, f, trap) != 0)
        return -1;
    for (size_t i = 0; i < type->result_count; i++)
        results[i] = wasm_value_from_slot(type->results[i], base[i]);
    return 0;
}

const wasm_functype *wasm_func_type(const wasm_func *f)
{
    return &f->type;
}

uint8_t *wasm_memory_data(wasm_memory *m)
{
    return m ? m->data : NULL;
}

uint64_t wasm_memory_size(const wasm_memory *m)
{
    return m ? m->size : 0;
}

wasm_value wasm_global_get(const wasm_global *g)
{
    return wasm_value_from_slot(g->type, g->value);
}

int wasm_table_get(const wasm_table *t, uint32_t index, wasm_value *out)
{
    if (!t || index >= t->size)
        return CX_EINVAL;
    *out = wasm_value_from_slot(t->type, t->elems[index]);
    return 0;
}
