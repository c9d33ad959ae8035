/* Reading the WebAssembly binary format: LEB128 integers, floats, names and
 * single instructions with their immediates.
 *
 * Every read is bounded by the reader's region (a section, a function body)
 * and fails with the spec's "malformed" wording instead of reading past it.
 * LEB128 follows the binary format to the letter: an N-bit integer takes at
 * most ceil(N/7) bytes ("integer representation too long"), and the unused
 * bits of the last byte must be zero for unsigned integers, or copies of the
 * sign bit for signed ones ("integer too large"). */
#include <string.h>

#include "wasm/module.h"

static int fail_end(const wasm_reader *r, cx_error *err)
{
    return cx_error_set(err, CX_EPARSE, "unexpected end at offset %zu", r->pos);
}

int wasm_read_u8(wasm_reader *r, uint8_t *out, cx_error *err)
{
    if (r->pos >= r->end)
        return fail_end(r, err);
    *out = r->data[r->pos++];
    return 0;
}

/* Reads an unsigned or signed LEB128 of at most `bits` bits into *out (as
 * raw bits, sign-extended to 64 when `is_signed`). */
static int read_leb(wasm_reader *r, unsigned bits, bool is_signed, uint64_t *out, cx_error *err)
{
    size_t start = r->pos;
    unsigned max_bytes = (bits + 6) / 7;
    uint64_t result = 0;
    unsigned shift = 0;
    for (unsigned i = 0;; i++) {
        if (r->pos >= r->end)
            return fail_end(r, err);
        uint8_t byte = r->data[r->pos++];
        if (i == max_bytes - 1) {
            if (byte & 0x80)
                return cx_error_set(err, CX_EPARSE,
                                    "integer representation too long at offset %zu", start);
            /* The bits of the last byte beyond the integer's width. */
            unsigned used = bits - shift; /* 1..7 */
            uint8_t extra_mask = (uint8_t)(0x7f & ~((1u << used) - 1));
            uint8_t extra = byte & extra_mask;
            if (!is_signed) {
                if (extra)
                    return cx_error_set(err, CX_EPARSE, "integer too large at offset %zu",
                                        start);
            } else {
                bool sign = (byte >> (used - 1)) & 1;
                if (extra != (sign ? extra_mask : 0))
                    return cx_error_set(err, CX_EPARSE, "integer too large at offset %zu",
                                        start);
            }
        }
        result |= (uint64_t)(byte & 0x7f) << shift;
        shift += 7;
        if (!(byte & 0x80))
            break;
    }
    if (is_signed && shift < 64 && (result >> (shift - 1)) & 1)
        result |= ~UINT64_C(0) << shift;
    *out = result;
    return 0;
}

int wasm_read_u32(wasm_reader *r, uint32_t *out, cx_error *err)
{
    uint64_t v;
    int rc = read_leb(r, 32, false, &v, err);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

int wasm_read_s32(wasm_reader *r, int32_t *out, cx_error *err)
{
    uint64_t v;
    int rc = read_leb(r, 32, true, &v, err);
    if (rc == 0)
        *out = (int32_t)(uint32_t)v;
    return rc;
}

int wasm_read_s33(wasm_reader *r, int64_t *out, cx_error *err)
{
    uint64_t v;
    int rc = read_leb(r, 33, true, &v, err);
    if (rc == 0)
        *out = (int64_t)v;
    return rc;
}

int wasm_read_s64(wasm_reader *r, int64_t *out, cx_error *err)
{
    uint64_t v;
    int rc = read_leb(r, 64, true, &v, err);
    if (rc == 0)
        *out = (int64_t)v;
    return rc;
}

int wasm_read_f32(wasm_reader *r, uint32_t *bits, cx_error *err)
{
    if (r->end - r->pos < 4) {
        r->pos = r->end;
        return fail_end(r, err);
    }
    const uint8_t *p = r->data + r->pos;
    *bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    r->pos += 4;
    return 0;
}

int wasm_read_f64(wasm_reader *r, uint64_t *bits, cx_error *err)
{
    if (r->end - r->pos < 8) {
        r->pos = r->end;
        return fail_end(r, err);
    }
    const uint8_t *p = r->data + r->pos;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    *bits = v;
    r->pos += 8;
    return 0;
}

/* UTF-8 as the spec defines it: shortest form, no surrogates, at most
 * U+10FFFF. */
static bool utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            n = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i < n)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n;
    }
    return true;
}

int wasm_read_name(wasm_reader *r, const char **bytes, uint32_t *len, cx_error *err)
{
    uint32_t n;
    int rc = wasm_read_u32(r, &n, err);
    if (rc)
        return rc;
    if (n > r->end - r->pos)
        return cx_error_set(err, CX_EPARSE, "unexpected end at offset %zu: name of %u bytes",
                            r->pos, n);
    if (n > WASM_MAX_NAME)
        return cx_error_set(err, CX_EPARSE, "name too long (%u bytes) at offset %zu", n, r->pos);
    if (!utf8_valid(r->data + r->pos, n))
        return cx_error_set(err, CX_EPARSE, "malformed UTF-8 encoding at offset %zu", r->pos);
    *bytes = (const char *)r->data + r->pos;
    *len = n;
    r->pos += n;
    return 0;
}

bool wasm_is_valtype(uint8_t byte, const wasm_features *features)
{
    switch (byte) {
    case WASM_I32:
    case WASM_I64:
    case WASM_F32:
    case WASM_F64:
        return true;
    case WASM_FUNCREF:
    case WASM_EXTERNREF:
        return features->reference_types;
    default:
        return false;
    }
}

const char *wasm_valtype_name(wasm_valtype type)
{
    switch (type) {
    case WASM_I32: return "i32";
    case WASM_I64: return "i64";
    case WASM_F32: return "f32";
    case WASM_F64: return "f64";
    case WASM_V128: return "v128";
    case WASM_FUNCREF: return "funcref";
    case WASM_EXTERNREF: return "externref";
    }
    return "?";
}

/* ---- instructions ------------------------------------------------------- */

static int illegal(const wasm_instr *in, cx_error *err)
{
    if (in->opcode > 0xff)
        return cx_error_set(err, CX_EPARSE, "illegal opcode 0xfc %u at offset %zu",
                            in->opcode & 0xffff, in->offset);
    return cx_error_set(err, CX_EPARSE, "illegal opcode 0x%02x at offset %zu", in->opcode,
                        in->offset);
}

static int read_zero_byte(wasm_reader *r, cx_error *err)
{
    uint8_t b = 0;
    size_t at = r->pos;
    int rc = wasm_read_u8(r, &b, err);
    if (rc)
        return rc;
    if (b != 0)
        return cx_error_set(err, CX_EPARSE, "zero byte expected at offset %zu", at);
    return 0;
}

static int read_memarg(wasm_reader *r, wasm_instr *in, cx_error *err)
{
    int rc = wasm_read_u32(r, &in->align, err);
    return rc ? rc : wasm_read_u32(r, &in->mem_offset, err);
}

static int read_block_type(wasm_reader *r, const wasm_features *f, wasm_instr *in,
                           cx_error *err)
{
    size_t at = r->pos;
    int rc = wasm_read_s33(r, &in->block_type, err);
    if (rc)
        return rc;
    if (in->block_type == WASM_BLOCKTYPE_EMPTY)
        return 0;
    if (in->block_type < 0) {
        int64_t byte = in->block_type + 0x80;
        if (r->pos - at == 1 && byte > 0 && wasm_is_valtype((uint8_t)byte, f))
            return 0;
        return cx_error_set(err, CX_EPARSE, "malformed block type at offset %zu", at);
    }
    if (!f->multi_value)
        return cx_error_set(err, CX_EPARSE, "malformed block type at offset %zu", at);
    return 0;
}

static int read_ref_type(wasm_reader *r, const wasm_features *f, wasm_valtype *out,
                         cx_error *err)
{
    uint8_t b = 0;
    size_t at = r->pos;
    int rc = wasm_read_u8(r, &b, err);
    if (rc)
        return rc;
    if (b != WASM_FUNCREF && !(b == WASM_EXTERNREF && f->reference_types))
        return cx_error_set(err, CX_EPARSE, "malformed reference type at offset %zu", at);
    *out = (wasm_valtype)b;
    return 0;
}

static int read_prefixed(wasm_reader *r, const wasm_features *f, wasm_instr *in, cx_error *err)
{
    uint32_t sub;
    int rc = wasm_read_u32(r, &sub, err);
    if (rc)
        return rc;
    in->opcode = 0xfc00 | (sub & 0xff);
    if (sub > 17) {
        in->opcode = 0xfc00 | 0xff;
        return cx_error_set(err, CX_EPARSE, "illegal opcode 0xfc %u at offset %zu", sub,
                            in->offset);
    }
    if (sub <= 7)
        return f->saturating_conversions ? 0 : illegal(in, err);
    bool bulk = f->bulk_memory;
    switch (sub) {
    case 8: /* memory.init */
        if (!bulk)
            return illegal(in, err);
        rc = wasm_read_u32(r, &in->index, err);
        return rc ? rc : read_zero_byte(r, err);
    case 9: /* data.drop */
        return bulk ? wasm_read_u32(r, &in->index, err) : illegal(in, err);
    case 10: /* memory.copy */
        if (!bulk)
            return illegal(in, err);
        rc = read_zero_byte(r, err);
        return rc ? rc : read_zero_byte(r, err);
    case 11: /* memory.fill */
        return bulk ? read_zero_byte(r, err) : illegal(in, err);
    case 12: /* table.init elem table */
    case 14: /* table.copy dst src */
        if (!bulk)
            return illegal(in, err);
        rc = wasm_read_u32(r, &in->index, err);
        if (rc)
            return rc;
        if (!f->reference_types) {
            in->index2 = 0;
            return read_zero_byte(r, err);
        }
        return wasm_read_u32(r, &in->index2, err);
    case 13: /* elem.drop */
        return bulk ? wasm_read_u32(r, &in->index, err) : illegal(in, err);
    default: /* 15..17: table.grow, table.size, table.fill */
        return f->reference_types ? wasm_read_u32(r, &in->index, err) : illegal(in, err);
    }
}

int wasm_read_instr(wasm_reader *r, const wasm_features *f, wasm_instr *in, cx_error *err)
{
    memset(in, 0, sizeof *in);
    in->offset = r->pos;
    uint8_t op = 0;
    int rc = wasm_read_u8(r, &op, err);
    if (rc)
        return rc;
    in->opcode = op;
    switch (op) {
    case 0x00: case 0x01: case 0x05: case 0x0b: case 0x0f: case 0x1a: case 0x1b:
        return 0;
    case 0x02: case 0x03: case 0x04:
        return read_block_type(r, f, in, err);
    case 0x0c: case 0x0d: /* br, br_if */
    case 0x10:            /* call */
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24:
        return wasm_read_u32(r, &in->index, err);
    case 0x0e: { /* br_table */
        rc = wasm_read_u32(r, &in->label_count, err);
        if (rc)
            return rc;
        if (in->label_count > WASM_MAX_BR_TABLE)
            return cx_error_set(err, CX_EPARSE, "br_table too large (%u labels) at offset %zu",
                                in->label_count, in->offset);
        in->labels_offset = r->pos;
        for (uint32_t i = 0; i < in->label_count; i++) {
            uint32_t label;
            rc = wasm_read_u32(r, &label, err);
            if (rc)
                return rc;
        }
        return wasm_read_u32(r, &in->index, err);
    }
    case 0x11: /* call_indirect type table */
        rc = wasm_read_u32(r, &in->index, err);
        if (rc)
            return rc;
        if (!f->reference_types)
            return read_zero_byte(r, err);
        return wasm_read_u32(r, &in->index2, err);
    case 0x1c: { /* select t* */
        if (!f->reference_types)
            return illegal(in, err);
        rc = wasm_read_u32(r, &in->type_count, err);
        if (rc)
            return rc;
        if (in->type_count > r->end - r->pos)
            return fail_end(r, err);
        for (uint32_t i = 0; i < in->type_count; i++) {
            uint8_t t = 0;
            size_t at = r->pos;
            rc = wasm_read_u8(r, &t, err);
            if (rc)
                return rc;
            if (!wasm_is_valtype(t, f))
                return cx_error_set(err, CX_EPARSE, "malformed value type at offset %zu", at);
            if (i == 0)
                in->type = (wasm_valtype)t;
        }
        return 0;
    }
    case 0x25: case 0x26: /* table.get, table.set */
        return f->reference_types ? wasm_read_u32(r, &in->index, err) : illegal(in, err);
    case 0x3f: case 0x40: /* memory.size, memory.grow */
        return read_zero_byte(r, err);
    case 0x41: {
        int32_t v = 0;
        rc = wasm_read_s32(r, &v, err);
        in->value = (uint32_t)v;
        return rc;
    }
    case 0x42: {
        int64_t v = 0;
        rc = wasm_read_s64(r, &v, err);
        in->value = (uint64_t)v;
        return rc;
    }
    case 0x43: {
        uint32_t bits;
        rc = wasm_read_f32(r, &bits, err);
        in->value = bits;
        return rc;
    }
    case 0x44:
        return wasm_read_f64(r, &in->value, err);
    case 0xd0:
        return f->reference_types ? read_ref_type(r, f, &in->type, err) : illegal(in, err);
    case 0xd1:
        return f->reference_types ? 0 : illegal(in, err);
    case 0xd2:
        return f->reference_types ? wasm_read_u32(r, &in->index, err) : illegal(in, err);
    case 0xfc:
        return read_prefixed(r, f, in, err);
    default:
        break;
    }
    if (op >= 0x28 && op <= 0x3e)
        return read_memarg(r, in, err);
    if (op >= 0x45 && op <= 0xbf)
        return 0;
    if (op >= 0xc0 && op <= 0xc4)
        return f->sign_extension ? 0 : illegal(in, err);
    return illegal(in, err);
}
