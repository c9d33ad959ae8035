/* Caxton's WebAssembly engine: the public API.
 *
 * decode -> validate -> compile (wasm_module_new), then instantiate into a
 * store with imports (wasm_instantiate), then call exported functions
 * (wasm_call). WebAssembly 2.0 core without SIMD.
 *
 * Ownership: a wasm_module is immutable once built and may be shared by many
 * instances (reference counted). A wasm_store owns everything that lives at
 * run time: instances, functions, memories, tables, globals, and the limits,
 * fuel and deadline they run under. Objects of one store are never used with
 * another; two stores never affect each other. There is no global state.
 * A store is used by one thread at a time.
 *
 * Errors: building and linking return NULL/negative CX_E* with a cx_error
 * whose message names the section, byte offset and rule broken. Run-time
 * failures are traps, returned as values (wasm_trap); the host never aborts,
 * whatever the module does. */
#ifndef CAXTON_WASM_WASM_H
#define CAXTON_WASM_WASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* ---- values ------------------------------------------------------------- */

typedef enum wasm_valtype {
    WASM_I32 = 0x7f,
    WASM_I64 = 0x7e,
    WASM_F32 = 0x7d,
    WASM_F64 = 0x7c,
    WASM_V128 = 0x7b, /* decoded and refused: SIMD is not supported */
    WASM_FUNCREF = 0x70,
    WASM_EXTERNREF = 0x6f,
} wasm_valtype;

/* Floats are kept as their bit patterns so NaN payloads survive exactly.
 * References: funcref is a wasm_func pointer (NULL = null), externref an
 * opaque host value with WASM_EXTERNREF_NULL as null. */
typedef struct wasm_value {
    wasm_valtype type;
    union {
        uint32_t i32;
        uint64_t i64;
        uint32_t f32;
        uint64_t f64;
        struct wasm_func *func;
        uintptr_t ext;
    } of;
} wasm_value;

#define WASM_EXTERNREF_NULL UINTPTR_MAX

typedef struct wasm_functype {
    uint32_t param_count;
    uint32_t result_count;
    const wasm_valtype *params;
    const wasm_valtype *results;
} wasm_functype;

typedef struct wasm_limits_decl {
    uint32_t min;
    uint32_t max;
    bool has_max;
} wasm_limits_decl;

/* ---- features and limits ------------------------------------------------ */

typedef struct wasm_features {
    bool sign_extension;
    bool saturating_conversions;
    bool multi_value;
    bool bulk_memory;
    bool reference_types;
    bool mutable_globals; /* importing/exporting mutable globals */
} wasm_features;

/* All of WebAssembly 2.0 without SIMD. */
wasm_features wasm_features_2_0(void);
/* WebAssembly 1.0 (MVP) with mutable globals. */
wasm_features wasm_features_1_0(void);

/* Limits a store enforces on everything that runs in it. Zero means the
 * engine default (noted). */
typedef struct wasm_limits {
    uint32_t max_memory_pages;   /* per memory; default 65536 (4 GiB) */
    uint32_t max_table_elements; /* of all the store's tables together (each
                                  * table's size counts; table creation past it
                                  * is refused, table.grow returns -1);
                                  * default 10,000,000 */
    uint32_t max_call_depth;     /* default 10,000 frames */
    uint32_t max_stack_values;   /* operand stack + locals; default 1,048,576 */
} wasm_limits;

/* ---- traps -------------------------------------------------------------- */

typedef enum wasm_trap_kind {
    WASM_TRAP_NONE = 0,
    WASM_TRAP_UNREACHABLE,
    WASM_TRAP_MEMORY_OUT_OF_BOUNDS,
    WASM_TRAP_TABLE_OUT_OF_BOUNDS,
    WASM_TRAP_DIVIDE_BY_ZERO,
    WASM_TRAP_INTEGER_OVERFLOW,
    WASM_TRAP_INVALID_CONVERSION,
    WASM_TRAP_UNDEFINED_ELEMENT,
    WASM_TRAP_UNINITIALIZED_ELEMENT,
    WASM_TRAP_INDIRECT_CALL_MISMATCH,
    WASM_TRAP_CALL_STACK_EXHAUSTED,
    WASM_TRAP_FUEL_EXHAUSTED,
    WASM_TRAP_DEADLINE_EXCEEDED,
    WASM_TRAP_HOST, /* a host function failed */
} wasm_trap_kind;

typedef struct wasm_trap {
    wasm_trap_kind kind;
    char message[160];     /* the spec's wording: "integer divide by zero" */
    uint32_t func_index;   /* where it happened (module function index) */
    char func_name[64];    /* from the name section, or "" */
    uint32_t code_offset;  /* byte offset in the module's code section */
} wasm_trap;

/* The spec's message for a trap kind ("out of bounds memory access"). */
const char *wasm_trap_message(wasm_trap_kind kind);

/* ---- modules ------------------------------------------------------------ */

typedef struct wasm_module wasm_module;

typedef enum wasm_extern_kind {
    WASM_EXTERN_FUNC = 0,
    WASM_EXTERN_TABLE = 1,
    WASM_EXTERN_MEMORY = 2,
    WASM_EXTERN_GLOBAL = 3,
} wasm_extern_kind;

typedef struct wasm_externtype {
    wasm_extern_kind kind;
    wasm_functype func;       /* FUNC */
    wasm_valtype table_type;  /* TABLE: funcref or externref */
    wasm_limits_decl limits;  /* TABLE, MEMORY */
    wasm_valtype global_type; /* GLOBAL */
    bool global_mutable;      /* GLOBAL */
} wasm_externtype;

/* Decodes, validates and compiles. NULL with err on malformed input
 * (CX_EPARSE: "malformed") or an invalid module (CX_EINVAL: "invalid"). */
wasm_module *wasm_module_new(const uint8_t *bytes, size_t len, const wasm_features *features,
                             cx_error *err);
/* Decode and validate only (what `caxton wasm validate` and the spec's
 * assert_malformed/assert_invalid need); same errors. */
int wasm_module_validate(const uint8_t *bytes, size_t len, const wasm_features *features,
                         cx_error *err);
wasm_module *wasm_module_ref(wasm_module *m);
void wasm_module_unref(wasm_module *m);

size_t wasm_module_import_count(const wasm_module *m);
void wasm_module_import(const wasm_module *m, size_t index, const char **module_name,
                        const char **name, wasm_externtype *type);
size_t wasm_module_export_count(const wasm_module *m);
void wasm_module_export(const wasm_module *m, size_t index, const char **name,
                        wasm_externtype *type);

/* ---- describing a module (read-only, for tools) -------------------------- */

/* "i32", "funcref", ... */
const char *wasm_valtype_name(wasm_valtype type);

#define WASM_SECTION_ID_COUNT 13 /* custom (0) .. data count (12) */

/* A summary of what a module declares, needs and uses, for operators'
 * tools (`caxton wasm analyze-requirements`, `compatibility-check`, `diff`).
 * Counts include imported entries. Section sizes are payload bytes (the
 * section's id byte and size field not counted). */
typedef struct wasm_module_info {
    uint32_t type_count;
    uint32_t func_count, func_import_count;
    uint32_t table_count, memory_count, global_count;
    uint32_t import_count, export_count;
    uint32_t elem_count, data_count;
    bool has_start;
    uint32_t start; /* function index, when has_start */
    /* Memory 0 (imported or defined), when memory_count > 0. */
    uint32_t memory_min_pages, memory_max_pages;
    bool memory_has_max;
    size_t module_size;
    size_t code_size;            /* the code section */
    size_t custom_section_bytes; /* all custom sections together */
    size_t section_bytes[WASM_SECTION_ID_COUNT]; /* by section id; customs summed at 0 */
    uint32_t max_function_locals; /* parameters + declared locals, largest function */
    /* The 2.0 features the module actually uses (its types, segments,
     * imports/exports and instructions), as opposed to those it was
     * accepted with. */
    wasm_features features_used;
} wasm_module_info;

void wasm_module_describe(const wasm_module *m, wasm_module_info *out);

typedef struct wasm_section_info {
    uint8_t id;           /* 0 = custom */
    const char *name;     /* custom: its name (name_len bytes, not NUL-terminated);
                           * others: "type", "import", ..., "data count" */
    uint32_t name_len;
    size_t offset;        /* of the id byte in the module */
    size_t size;          /* payload bytes */
} wasm_section_info;

/* The module's sections in file order: start with *cursor = 0; each call
 * fills out and returns true, or returns false after the last one. */
bool wasm_module_next_section(const wasm_module *m, size_t *cursor, wasm_section_info *out);

typedef struct wasm_function_info {
    bool imported;
    wasm_functype type;
    const char *name;     /* from the name section, or NULL */
    uint32_t local_count; /* declared locals, parameters not included */
    size_t body_size;     /* its entry in the code section, size field included; 0 if imported */
} wasm_function_info;

/* Function `index` of the function index space (imports first);
 * index < wasm_module_info.func_count. */
void wasm_module_function(const wasm_module *m, uint32_t index, wasm_function_info *out);
/* Table `index` of the table index space (imports first), kind TABLE. */
void wasm_module_table(const wasm_module *m, uint32_t index, wasm_externtype *out);
/* The index export `index` refers to, in the index space of its kind. */
uint32_t wasm_module_export_index(const wasm_module *m, size_t index);

/* ---- run time ----------------------------------------------------------- */

typedef struct wasm_store wasm_store;
typedef struct wasm_instance wasm_instance;
typedef struct wasm_func wasm_func;
typedef struct wasm_memory wasm_memory;
typedef struct wasm_table wasm_table;
typedef struct wasm_global wasm_global;

typedef struct wasm_extern {
    wasm_extern_kind kind;
    union {
        wasm_func *func;
        wasm_table *table;
        wasm_memory *memory;
        wasm_global *global;
    } of;
} wasm_extern;

wasm_store *wasm_store_new(const wasm_limits *limits);
void wasm_store_free(wasm_store *s); /* frees everything the store owns */

/* Fuel: each call runs until it has used `fuel` units (charged per basic
 * block) and traps "fuel exhausted" past it. 0 disables metering. */
void wasm_store_set_fuel(wasm_store *s, uint64_t fuel);
uint64_t wasm_store_fuel_used(const wasm_store *s);
/* Deadline on the monotonic clock (ns); 0 = none. */
void wasm_store_set_deadline(wasm_store *s, uint64_t monotonic_ns);

/* A host function: fills results and returns 0, or fills trap (kind
 * WASM_TRAP_HOST and a message) and returns -1. memory is the calling
 * instance's memory 0, or NULL. */
typedef int (*wasm_host_fn)(void *env, wasm_memory *memory, const wasm_value *args,
                            wasm_value *results, wasm_trap *trap);

wasm_func *wasm_func_new_host(wasm_store *s, const wasm_functype *type, wasm_host_fn fn,
                              void *env);
wasm_memory *wasm_memory_new(wasm_store *s, wasm_limits_decl limits, cx_error *err);
wasm_table *wasm_table_new(wasm_store *s, wasm_valtype type, wasm_limits_decl limits,
                           cx_error *err);
wasm_global *wasm_global_new(wasm_store *s, wasm_value value, bool mutable_, cx_error *err);

/* Links and instantiates: imports in the module's import order. A link
 * failure (missing or mismatched import, a limit refused) returns NULL with
 * err (the spec's assert_unlinkable); a trap while initialising (segment out
 * of bounds, start function) returns NULL with *trap filled (the spec's
 * assert_uninstantiable). */
wasm_instance *wasm_instantiate(wasm_store *s, wasm_module *m, const wasm_extern *imports,
                                size_t import_count, wasm_trap *trap, cx_error *err);
bool wasm_instance_export(const wasm_instance *inst, const char *name, wasm_extern *out);
/* The same for a name of len bytes, which may contain NUL bytes. */
bool wasm_instance_export_n(const wasm_instance *inst, const char *name, size_t len,
                            wasm_extern *out);

/* Calls a function. 0 with results filled, or -1 with *trap. Argument
 * count and types must match the function type (CX_EINVAL otherwise, as a
 * trap of kind WASM_TRAP_HOST). */
int wasm_call(wasm_store *s, wasm_func *f, const wasm_value *args, size_t arg_count,
              wasm_value *results, size_t result_count, wasm_trap *trap);
const wasm_functype *wasm_func_type(const wasm_func *f);

/* Memory access for hosts: bounds-checked. */
uint8_t *wasm_memory_data(wasm_memory *m);
uint64_t wasm_memory_size(const wasm_memory *m); /* bytes */
wasm_value wasm_global_get(const wasm_global *g);
/* Table element (funcref or externref value), bounds-checked. */
int wasm_table_get(const wasm_table *t, uint32_t index, wasm_value *out);

#endif
