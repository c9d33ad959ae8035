/* The engine's internal form of a decoded module, shared by the decoder
 * (decode.c), the validator (validate.c), the compiler and the run time.
 * Nothing outside src/wasm includes this file: the public API is wasm.h.
 *
 * The decoder fills a wasm_module_def from the binary and checks only what
 * the binary format requires (the spec's "malformed"); the validator checks
 * the typing rules ("invalid"). Function bodies and constant expressions stay
 * as byte ranges into the module's own copy of the binary, read again with
 * the reader below by whoever needs them. */
#ifndef CAXTON_WASM_MODULE_H
#define CAXTON_WASM_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "wasm/wasm.h"

/* Implementation limits on what a module may declare (the spec allows
 * engines such limits; they bound memory and time spent on hostile input). */
#define WASM_MAX_TYPES 1000000
#define WASM_MAX_FUNCTIONS 1000000
#define WASM_MAX_IMPORTS 100000
#define WASM_MAX_EXPORTS 100000
#define WASM_MAX_GLOBALS 1000000
#define WASM_MAX_TABLES 100000
#define WASM_MAX_MEMORIES 1
#define WASM_MAX_SEGMENTS 100000
#define WASM_MAX_PARAMS 1000
#define WASM_MAX_RESULTS 1000
#define WASM_MAX_LOCALS 50000
#define WASM_MAX_MODULE_LOCALS (4u << 20) /* declared locals, all functions together */
#define WASM_MAX_FUNCTION_SIZE (7654321)
#define WASM_MAX_BR_TABLE 65520
#define WASM_MAX_NAME 100000
#define WASM_MAX_MODULE_SIZE (1u << 30)
#define WASM_PAGE_SIZE 65536u
#define WASM_MAX_PAGES 65536u

/* ---- reading the binary -------------------------------------------------- */

typedef struct wasm_reader {
    const uint8_t *data; /* whole module */
    size_t pos, end;     /* current offset and end of this region */
} wasm_reader;

/* Each returns 0, or CX_EPARSE with err set to "<what> at offset N: ..."
 * (the spec's malformed wording where it has one: "unexpected end",
 * "integer representation too long", "integer too large"). */
int wasm_read_u8(wasm_reader *r, uint8_t *out, cx_error *err);
int wasm_read_u32(wasm_reader *r, uint32_t *out, cx_error *err);   /* LEB128, <= 5 bytes */
int wasm_read_s32(wasm_reader *r, int32_t *out, cx_error *err);
int wasm_read_s33(wasm_reader *r, int64_t *out, cx_error *err);    /* block types */
int wasm_read_s64(wasm_reader *r, int64_t *out, cx_error *err);
int wasm_read_f32(wasm_reader *r, uint32_t *bits, cx_error *err);
int wasm_read_f64(wasm_reader *r, uint64_t *bits, cx_error *err);
/* A name: u32 length + UTF-8 bytes (checked); points into the module. */
int wasm_read_name(wasm_reader *r, const char **bytes, uint32_t *len, cx_error *err);

/* One instruction with its immediates, as read by wasm_read_instr. The
 * decoder uses it to check every function body and constant expression
 * syntactically; the validator and the compiler read bodies again with it. */
typedef struct wasm_instr {
    uint32_t opcode;       /* one byte, or 0xFC00 | sub-opcode for the 0xFC prefix */
    size_t offset;         /* of the opcode's first byte in the module */
    /* block/loop/if: the s33 block type: WASM_BLOCKTYPE_EMPTY, a value type
     * as its byte minus 0x80 (i32 = -1, ...), or a type index (>= 0). */
    int64_t block_type;
    /* The first index immediate: label (br, br_if, br_table default), local,
     * global, function, type (call_indirect), table (table.*), elem segment
     * (table.init, elem.drop), data segment (memory.init, data.drop),
     * destination table (table.copy). */
    uint32_t index;
    /* The second: table (call_indirect, table.init), source table
     * (table.copy). */
    uint32_t index2;
    uint32_t align, mem_offset; /* loads and stores (align as log2) */
    uint64_t value;        /* const: i32 (zero-extended), i64, f32 or f64 bits */
    wasm_valtype type;     /* ref.null: the reference type; typed select: the type */
    uint32_t type_count;   /* typed select: number of types in the vector */
    uint32_t label_count;  /* br_table: number of labels before the default */
    size_t labels_offset;  /* br_table: where those labels start (u32 each) */
} wasm_instr;

#define WASM_BLOCKTYPE_EMPTY (-64)

/* Reads one instruction. CX_EPARSE on an unknown opcode ("illegal opcode"),
 * a feature that is off, a malformed immediate or the end of the region. */
int wasm_read_instr(wasm_reader *r, const wasm_features *features, wasm_instr *out,
                    cx_error *err);
/* A value type byte, honouring the features (reference types). */
bool wasm_is_valtype(uint8_t byte, const wasm_features *features);

/* ---- the module ---------------------------------------------------------- */

typedef struct wasm_functype_def {
    uint32_t param_count, result_count;
    wasm_valtype *types; /* params then results */
} wasm_functype_def;

typedef struct wasm_table_def {
    wasm_valtype elem_type;
    wasm_limits_decl limits;
} wasm_table_def;

typedef struct wasm_global_def {
    wasm_valtype type;
    bool mutable_;
    /* Constant expression bytes (for defined globals), the final `end`
     * included; the same holds for expression range (offset, end) below. */
    size_t init_offset, init_end;
} wasm_global_def;

typedef struct wasm_import_def {
    const char *module_name, *name; /* NUL-terminated copies owned by the def */
    wasm_extern_kind kind;
    uint32_t index; /* FUNC: type index; others: index into the tables/memories/globals arrays */
} wasm_import_def;

typedef struct wasm_export_def {
    const char *name; /* NUL-terminated copy owned by the def */
    wasm_extern_kind kind;
    uint32_t index;   /* in the combined (imports first) index space of its kind */
    uint32_t name_len; /* bytes in name (a name may contain U+0000) */
} wasm_export_def;

typedef struct wasm_func_def {
    uint32_t type_index;
    bool imported;
    /* Defined functions: */
    uint32_t local_count;          /* declared locals, parameters not included */
    wasm_valtype *local_types;     /* local_count entries */
    size_t code_offset, code_end;  /* the instructions, after the locals */
    size_t body_offset;            /* start of the body entry (for trap offsets) */
    const char *name;              /* from the name section, or NULL */
} wasm_func_def;

typedef enum wasm_segment_mode {
    WASM_SEGMENT_ACTIVE,
    WASM_SEGMENT_PASSIVE,
    WASM_SEGMENT_DECLARATIVE,
} wasm_segment_mode;

typedef struct wasm_elem_def {
    wasm_segment_mode mode;
    wasm_valtype type;            /* funcref or externref */
    uint32_t table_index;         /* active */
    size_t offset_expr, offset_end; /* active: constant expression */
    uint32_t count;
    /* Either function indices (func_indices) or constant expressions
     * (expr_offsets[i], expr_ends[i]). */
    uint32_t *func_indices;
    size_t *expr_offsets, *expr_ends;
} wasm_elem_def;

typedef struct wasm_data_def {
    wasm_segment_mode mode;       /* active or passive */
    uint32_t memory_index;
    size_t offset_expr, offset_end;
    size_t bytes_offset;          /* into the module binary */
    uint32_t size;
} wasm_data_def;

typedef struct wasm_module_def {
    uint8_t *bytes; /* owned copy of the binary */
    size_t size;
    wasm_features features;

    wasm_functype_def *types;
    uint32_t type_count;
    wasm_import_def *imports;
    uint32_t import_count;
    /* Index spaces, imports first. */
    wasm_func_def *funcs;
    uint32_t func_count, func_import_count;
    wasm_table_def *tables;
    uint32_t table_count, table_import_count;
    wasm_limits_decl *memories;
    uint32_t memory_count, memory_import_count;
    wasm_global_def *globals;
    uint32_t global_count, global_import_count;
    wasm_export_def *exports;
    uint32_t export_count;
    bool has_start;
    uint32_t start;
    wasm_elem_def *elems;
    uint32_t elem_count;
    wasm_data_def *datas;
    uint32_t data_count;
    bool has_data_count;          /* the data count section was present */
    uint32_t data_count_declared;
    /* Functions referenced outside function bodies (exports, element
     * segments, global initialisers): the only ones ref.func may name. */
    uint8_t *func_declared;       /* func_count flags */
    size_t code_section_offset;   /* for trap offsets */
} wasm_module_def;

/* Decodes the binary format (copies bytes). CX_EPARSE on malformed input. */
wasm_module_def *wasm_decode(const uint8_t *bytes, size_t len, const wasm_features *features,
                             cx_error *err);
void wasm_module_def_free(wasm_module_def *def);

/* Checks the validation rules. CX_EINVAL on an invalid module (the message
 * uses the spec's wording where it has one: "type mismatch", "unknown
 * function", ...). */
int wasm_validate(const wasm_module_def *def, cx_error *err);

static inline const wasm_functype_def *wasm_func_type_def(const wasm_module_def *def,
                                                           uint32_t func_index)
{
    return &def->types[def->funcs[func_index].type_index];
}

#endif
