/* Shared inside src/llm only: one provider's settings as the client uses
 * them, the protocol table that maps a provider type onto its wire format,
 * and the neutral answer every protocol parses into.
 *
 * Settings are immutable once built and reference-counted, so a call keeps
 * the settings it started with across a reconfigure (SIGHUP). A protocol is
 * a constant table: the client never branches on a type name, it calls
 * through the table, so a new type is one new file and one table entry. */
#ifndef CAXTON_LLM_LLM_INTERNAL_H
#define CAXTON_LLM_LLM_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "llm/llm.h"

#define LLM_PROVIDERS_MAX 64      /* providers in one configuration */
#define LLM_PROVIDER_NAME_MAX 64  /* bytes in a provider name */
#define LLM_MAX_TOOLS 256         /* tools offered in one request */
#define LLM_MAX_TOOL_CALLS 128    /* tool calls in one message or answer */
#define LLM_TOOL_NAME_MAX 64      /* bytes in a tool name we offer */
#define LLM_TOOL_CALL_NAME_MAX 256 /* bytes in a tool name an answer may use */
#define LLM_TOOL_CALL_ID_MAX 256  /* bytes in a tool call id */
#define LLM_ANTHROPIC_VERSION "2023-06-01"
#define LLM_ANTHROPIC_DEFAULT_MAX_TOKENS 1024 /* the API requires max_tokens */

/* One answer in the neutral shape, owned by whoever parsed it. */
typedef struct llm_answer {
    char *text;              /* NULL when the LLM only asked for tools */
    char *finish_reason;     /* "stop", "length", "tool_calls", or the provider's own word */
    char *model;             /* the model the provider says it used, or NULL */
    uint64_t prompt_tokens;
    uint64_t completion_tokens;
    llm_tool_call *tool_calls; /* their strings and arguments live in store */
    size_t tool_call_count;
    json_t *store;             /* owns what tool_calls point into */
} llm_answer;

/* The vectors of an embeddings answer, owned by whoever parsed it. */
typedef struct llm_embedding {
    float *vectors;         /* count * dim, row after row, in the order of the texts */
    size_t count, dim;
    uint64_t prompt_tokens; /* as the provider counts them; 0 when it does not say */
} llm_embedding;

/* Frees the vectors and zeroes it. */
void llm_embedding_free(llm_embedding *e);

/* The role's name as OpenAI and Ollama write it ("tool"); NULL if unknown. */
const char *llm_role_name(llm_role role);

/* Frees what the answer owns and zeroes it. */
void llm_answer_free(llm_answer *a);

/* How one provider type speaks. */
typedef struct llm_protocol {
    const char *type;             /* "openai", "anthropic", "ollama" */
    const char *path;             /* appended to base_url */
    const char *default_base_url;
    const char *key_header;       /* the api_key follows this header prefix */
    const char *extra_header;     /* a fixed header line, or NULL */
    /* The request body (model resolved); NULL when the request cannot be
     * expressed (bad role, invalid UTF-8) or memory ran out. */
    json_t *(*request_json)(const llm_request *req, const char *model);
    /* A 2xx body into *out: 0, or CX_EPARSE/CX_ENOMEM with reason
     * (LLM_REASON_MALFORMED / _EMPTY) and detail; *out is empty then. */
    int (*parse)(const char *body, size_t len, llm_answer *out, const char **reason,
                 char *detail, size_t detail_size);
    /* Embeddings (NULL: the type has none): the path appended to base_url, the
     * request body, and a 2xx answer for `expected` texts into *out (as parse). */
    const char *embed_path;
    json_t *(*embed_request_json)(const char *const *texts, size_t count, const char *model);
    int (*embed_parse)(const char *body, size_t len, size_t expected, struct llm_embedding *out,
                       const char **reason, char *detail, size_t detail_size);
} llm_protocol;

extern const llm_protocol llm_protocol_openai;
extern const llm_protocol llm_protocol_anthropic;
extern const llm_protocol llm_protocol_ollama;

/* The protocol of a type name, or NULL. */
const llm_protocol *llm_protocol_find(const char *type);

typedef struct llm_settings {
    unsigned refs;
    char *name;            /* the key in llm.providers */
    const char *type;      /* protocol->type */
    const llm_protocol *protocol;
    char *base_url;        /* without a trailing slash */
    char *url;             /* base_url + protocol->path */
    char *embed_url;       /* base_url + protocol->embed_path; NULL without embeddings */
    char *api_key;         /* NULL when not set; never logged */
    char *model;           /* NULL when not set */
    uint64_t timeout_ms;   /* per attempt */
    unsigned retries;      /* after the first attempt */
    unsigned max_concurrency;
    char **fallback;       /* provider names, in order */
    size_t fallback_count;
} llm_settings;

/* Builds one settings object per provider, in config order, from an object
 * llm_providers_check accepted. CX_ECONFIG (first problem in err) if not. */
int llm_settings_build(const json_t *providers, llm_settings ***out, size_t *count,
                       cx_error *err);
/* Drops one reference; the last one wipes the key and frees. */
void llm_settings_release(llm_settings *s);
/* Frees an array from llm_settings_build, releasing each element. */
void llm_settings_release_all(llm_settings **list, size_t count);

/* ---- Protocol entry points (tested directly) ------------------------------------------------- */

int llm_openai_parse_answer(const char *body, size_t len, llm_answer *out, const char **reason,
                            char *detail, size_t detail_size);
json_t *llm_anthropic_request_json(const llm_request *req, const char *model);
int llm_anthropic_parse_answer(const char *body, size_t len, llm_answer *out,
                               const char **reason, char *detail, size_t detail_size);
json_t *llm_ollama_request_json(const llm_request *req, const char *model);
int llm_ollama_parse_answer(const char *body, size_t len, llm_answer *out, const char **reason,
                            char *detail, size_t detail_size);

/* Embeddings (embeddings.c): the body both types take, {"model", "input": [texts]}
 * (NULL for no texts, no model or no memory), and each type's answer: OpenAI's
 * {"data": [{"index", "embedding": [numbers]}], "usage": {"prompt_tokens"}} and
 * Ollama's {"embeddings": [[numbers]], "prompt_eval_count"}. 0, or CX_EPARSE
 * with reason and detail (and *out empty). */
json_t *llm_embed_request_json(const char *const *texts, size_t count, const char *model);
int llm_openai_parse_embeddings(const char *body, size_t len, size_t expected,
                                llm_embedding *out, const char **reason, char *detail,
                                size_t detail_size);
int llm_ollama_parse_embeddings(const char *body, size_t len, size_t expected,
                                llm_embedding *out, const char **reason, char *detail,
                                size_t detail_size);

/* The OpenAI `tools` list (also Ollama's): [{type, function:{name, description,
 * parameters}}]. NULL on a bad tool or no memory. */
json_t *llm_openai_tools_json(const llm_tool *tools, size_t count);

/* ---- Pieces the protocols share (answer.c) --------------------------------------------------- */

/* {name, description (when given), <schema_key>: the input schema, or
 * {"type":"object"} when the tool has none}. NULL for a bad name, a schema
 * that is not an object, text that is not UTF-8, or no memory. */
json_t *llm_tool_json(const llm_tool *tool, const char *schema_key);
/* A tool name we may offer: 1..LLM_TOOL_NAME_MAX of [A-Za-z0-9_-]. */
bool llm_tool_name_ok(const char *name);
/* The arguments of a call in a request, as an object (new reference): the
 * parsed ones, else arguments_text when it is an object, else {}. */
json_t *llm_call_arguments_object(const llm_tool_call *call);
/* The arguments as JSON text for a request: arguments_text when given, else
 * the object compact, else "{}". A new string (free()), NULL on no memory. */
char *llm_call_arguments_text(const llm_tool_call *call);

/* Parses a response body (size checked, counts as reals) into a new value,
 * or NULL with reason and detail. */
json_t *llm_answer_load(const char *body, size_t len, const char **reason, char *detail,
                        size_t detail_size);
/* The same with another size limit (bytes). */
json_t *llm_answer_load_max(const char *body, size_t len, size_t max, const char **reason,
                            char *detail, size_t detail_size);
/* Sets reason and a formatted detail; returns CX_EPARSE. */
int llm_answer_refuse(const char **reason, char *detail, size_t detail_size,
                      const char *why, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* A token count from obj[key]: absent or null is 0, a number is clamped;
 * false for a negative number or another type. */
bool llm_read_tokens(const json_t *obj, const char *key, uint64_t *out);
/* An optional string: absent or null is NULL; false for another type. */
bool llm_read_optional_string(const json_t *obj, const char *key, const char **out);
/* Adds one tool call to the answer. id NULL or empty: one is generated.
 * arguments: a JSON text string (parsed; "" means {}), an object, or absent
 * (NULL or null: {}); text that is not an object leaves arguments NULL and
 * keeps the text. 0, CX_EPARSE with *why (a bad name, id or arguments type,
 * too many calls), or CX_ENOMEM. */
int llm_answer_add_call(llm_answer *a, const char *id, const char *name,
                        const json_t *arguments, const char **why);
/* Copies text (empty counts as none), finish reason, model and counts into
 * the answer; then refuses an answer with neither text nor tool calls as
 * LLM_REASON_EMPTY. 0, CX_EPARSE, or CX_ENOMEM (reason MALFORMED). */
int llm_answer_finish(llm_answer *a, const char *text, size_t text_len, const char *finish,
                      const char *model, uint64_t prompt, uint64_t completion,
                      const char **reason, char *detail, size_t detail_size);
/* A fresh call id: "call_" and 24 hex digits (out: at least 32 bytes). */
void llm_tool_call_id_new(char *out, size_t size);

/* The provider's own explanation in an error body ({"error":{"message":..}}
 * as OpenAI and Anthropic send it, {"error":"..."} as Ollama does, or
 * {"message":...}), with Anthropic's error type in front ("overloaded_error:
 * ..."), quoted and cut for an operator, or a quoted start of the body when
 * it has none; secret (may be NULL) is replaced by "***". Empty when the
 * body is. */
void llm_error_text(const char *body, size_t len, const char *secret, char *out, size_t size);

/* Replaces every occurrence of secret in s (NUL-terminated) with "***". */
void llm_redact(char *s, const char *secret);

#endif
