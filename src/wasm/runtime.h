/* The run-time objects behind wasm.h's opaque handles, shared by the store
 * and instantiation code (runtime.c), the module wrapper (wasm.c) and the
 * interpreter (exec.c). Nothing outside src/wasm includes this file. */
#ifndef CAXTON_WASM_RUNTIME_H
#define CAXTON_WASM_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wasm/compile.h"
#include "wasm/module.h"
#include "wasm/wasm.h"

#define WASM_DEFAULT_MAX_TABLE 10000000u
#define WASM_DEFAULT_CALL_DEPTH 10000u
#define WASM_DEFAULT_STACK_VALUES 1048576u

struct wasm_module {
    int refs;
    wasm_module_def *def;
    wasm_code_func *code;  /* one per defined function */
    uint64_t *type_hashes; /* one per type, for call_indirect */
};

struct wasm_func {
    wasm_functype type;
    uint64_t type_hash;
    wasm_instance *inst;         /* defining instance; NULL for host functions */
    const wasm_code_func *code;  /* NULL for host functions */
    wasm_host_fn host;
    void *env;
    wasm_valtype *owned_types;   /* host functions: params then results */
};

struct wasm_memory {
    uint8_t *data;      /* mmap'ed, size bytes (NULL when size is 0) */
    uint64_t size;      /* bytes */
    uint32_t pages;
    uint32_t max_pages; /* declared maximum or 65536 */
    bool has_max;
    uint32_t limit_pages; /* the store's limit */
};

struct wasm_table {
    wasm_valtype type;
    uint32_t size;
    uint32_t max;       /* declared maximum (has_max) */
    bool has_max;
    uint32_t limit;     /* the store's limit */
    uint64_t *elems;    /* slot representation of references */
};

struct wasm_global {
    wasm_valtype type;
    bool mutable_;
    uint64_t value; /* slot representation */
};

typedef struct wasm_segment {
    uint64_t *refs;       /* element segments */
    const uint8_t *bytes; /* data segments */
    uint32_t size;        /* 0 once dropped */
} wasm_segment;

struct wasm_instance {
    wasm_store *store;
    wasm_module *module;
    wasm_func **funcs;
    wasm_table **tables;
    wasm_memory *memory; /* memory 0 or NULL */
    wasm_global **globals;
    wasm_segment *elems;
    wasm_segment *datas;
    wasm_export_def *exports; /* the module's */
    uint32_t export_count;
};

typedef struct wasm_frame {
    const wasm_cell *pc; /* where to continue in the caller */
    uint64_t *fp;
    const wasm_code_func *fn;
    wasm_instance *inst;
} wasm_frame;

typedef struct wasm_object {
    wasm_extern_kind kind; /* WASM_EXTERN_* or -1 for an instance */
    void *ptr;
} wasm_object;

struct wasm_store {
    wasm_limits limits;
    uint64_t fuel_limit; /* 0 = unmetered */
    uint64_t fuel_used;
    uint64_t deadline_ns;
    uint64_t *stack;
    size_t stack_used; /* slots in use by active calls */
    wasm_frame *frames;
    uint32_t depth;    /* active wasm frames */
    uint32_t activations; /* nested wasm_exec_call (host -> wasm re-entry) */
    uint64_t table_elements; /* of all tables, within limits.max_table_elements */
    wasm_object *objects;
    size_t object_count, object_cap;
};

/* Slot representation of values and back. */
uint64_t wasm_value_to_slot(const wasm_value *v);
wasm_value wasm_value_from_slot(wasm_valtype type, uint64_t slot);

/* FNV-1a hash of a function type's signature. */
uint64_t wasm_functype_hash(const wasm_valtype *params, uint32_t param_count,
                            const wasm_valtype *results, uint32_t result_count);
bool wasm_functype_equal(const wasm_functype *a, const wasm_functype *b);

/* Runs f with its arguments in s->stack[s->stack_used..]; on return the
 * results are there. 0, or -1 with *trap. (exec.c) */
int wasm_exec_call(wasm_store *s, wasm_func *f, wasm_trap *trap);

/* memory.grow: the old size in pages, or -1. */
int64_t wasm_memory_grow(wasm_memory *m, uint32_t delta);
/* Nested activations of the interpreter a store allows: a host function
 * that calls back into wasm nests C frames, so this bounds the C stack. */
#define WASM_MAX_ACTIVATIONS 128

/* Whether table.grow by delta fits t's maximum and the store's budget. */
bool wasm_table_can_grow(const wasm_store *s, const wasm_table *t, uint32_t delta);
/* table.grow: the old size, or -1. */
int64_t wasm_table_grow(wasm_store *s, wasm_table *t, uint32_t delta, uint64_t init);

void wasm_trap_set(wasm_trap *trap, wasm_trap_kind kind, const char *message);

#endif
