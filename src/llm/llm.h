/* LLM providers: chat completions over HTTP, asynchronous on the event loop.
 *
 * One llm_client per server owns a libcurl multi handle driven by the libuv
 * loop (uv_poll per socket, one uv_timer for curl's timeouts), so thousands
 * of calls can wait on providers without a thread each. Providers come from
 * the config's `llm.providers` mapping (docs/operations.md):
 *
 *   llm:
 *     providers:
 *       openai:                       # the name agents use in llm.provider
 *         type: openai                # optional when the name is a type
 *         base_url: https://api.openai.com/v1
 *         api_key: "${OPENAI_API_KEY}"
 *         model: gpt-4o-mini          # default model for agents that name none
 *         timeout: 30s                # per attempt
 *         retries: 3                  # after the first attempt
 *         max_concurrency: 16         # requests in flight; the rest wait in FIFO order
 *         fallback: [local]           # tried in order when this one fails after retries
 *       claude: { type: anthropic, base_url: https://api.anthropic.com, api_key: ... }
 *       local:  { type: ollama, base_url: http://localhost:11434, model: llama3.1 }
 *
 * Each call is tried, and retried on connection errors, timeouts, 429 and
 * 5xx with exponential backoff and jitter, honouring Retry-After (seconds or
 * HTTP date, capped), within the caller's overall deadline. Whatever happens,
 * the done callback runs exactly once (unless the call was cancelled), on the
 * loop thread, never from inside llm_chat() itself.
 *
 * The request and result are provider-neutral (messages, tool definitions,
 * tool calls and results, usage) so the agent loop is written once; each
 * type maps them onto its protocol: `openai` (POST {base_url}/chat/completions
 * with `tools`), `anthropic` (POST {base_url}/v1/messages with `tools`,
 * `x-api-key`, `anthropic-version`), `ollama` (POST {base_url}/api/chat).
 * When a provider fails after its retries (unreachable, 5xx, 429, an
 * attempt's own timeout; not a 4xx refusal, a malformed or empty answer or
 * the caller's deadline), its `fallback` providers are tried in order (and
 * theirs, each provider once) within the same deadline, each with its own
 * `model` (the request's model belongs to the first provider); the result
 * names the provider that answered. llm_embed() turns texts into vectors
 * through the same providers (openai and ollama types; no fallback).
 * Everything here runs on the loop thread only. */
#ifndef CAXTON_LLM_LLM_H
#define CAXTON_LLM_LLM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/error.h"

#define LLM_MAX_RESPONSE (8u * 1024 * 1024) /* a bigger response body is an error */
#define LLM_RETRY_AFTER_MAX_MS 60000u       /* a longer Retry-After is capped */
#define LLM_BACKOFF_BASE_MS 250u
#define LLM_BACKOFF_MAX_MS 8000u
#define LLM_EMBED_MAX_TEXTS 2048u             /* texts in one embeddings request */
#define LLM_EMBED_MAX_DIM 8192u               /* numbers in one embedding */
#define LLM_EMBED_MAX_RESPONSE (32u * 1024 * 1024) /* a bigger embeddings answer is an error */

typedef enum llm_role {
    LLM_ROLE_SYSTEM,
    LLM_ROLE_USER,
    LLM_ROLE_ASSISTANT,
    LLM_ROLE_TOOL, /* the result of one tool call */
} llm_role;

/* A tool the LLM may call. name: 1..64 of [A-Za-z0-9_-] (every provider's
 * rule; callers map their own names, e.g. "files.read_file", onto it). */
typedef struct llm_tool {
    const char *name;
    const char *description;   /* may be NULL */
    const json_t *input_schema; /* a JSON Schema object; NULL = {"type":"object"} */
} llm_tool;

/* One tool call the LLM asked for. */
typedef struct llm_tool_call {
    const char *id;        /* the provider's id (generated when it gives none) */
    const char *name;
    const json_t *arguments; /* an object, or NULL when the LLM sent text that is not one */
    const char *arguments_text; /* the arguments as the LLM sent them */
} llm_tool_call;

/* A message of the conversation sent to the LLM. */
typedef struct llm_message {
    llm_role role;
    const char *content;      /* UTF-8 text; may be NULL for an assistant turn with tool calls */
    /* assistant turns that asked for tools */
    const llm_tool_call *tool_calls;
    size_t tool_call_count;
    /* LLM_ROLE_TOOL: which call this answers */
    const char *tool_call_id;
    const char *tool_name;
    bool is_error;            /* the tool failed; content says why */
} llm_message;

typedef struct llm_request {
    const char *provider;        /* name in llm.providers */
    const char *model;           /* NULL: the provider's `model` (error if none) */
    double temperature;
    bool temperature_set;
    int64_t max_tokens;          /* 0: not sent */
    const llm_message *messages; /* copied by llm_chat */
    size_t message_count;
    uint64_t deadline_ms;        /* monotonic ms (time_monotonic_ns()/1e6); 0 = none */
    const char *agent;           /* for logs and usage accounting; may be NULL */
    const llm_tool *tools;       /* offered to the LLM; copied by llm_chat */
    size_t tool_count;
    /* The LLM must answer without calling tools now (the tools are still
     * described, as some providers require them while the history holds
     * tool calls): tool_choice "none"; Ollama, which has no such choice, is
     * sent no tools. */
    bool tools_none;
} llm_request;

/* Why a call failed: stable short words, used as the `reason` of the
 * failure reply an agent's sender gets. */
#define LLM_REASON_TIMEOUT "timeout"                 /* deadline or per-attempt timeout */
#define LLM_REASON_RATE_LIMITED "rate-limited"       /* 429 after all retries */
#define LLM_REASON_PROVIDER_ERROR "provider-error"   /* 5xx / 4xx from the provider */
#define LLM_REASON_UNREACHABLE "provider-unreachable" /* connection refused, DNS, TLS */
#define LLM_REASON_MALFORMED "malformed-response"    /* not JSON, wrong shape, too big */
#define LLM_REASON_EMPTY "empty-response"            /* no choices / no content */
#define LLM_REASON_UNKNOWN_PROVIDER "unknown-provider"
#define LLM_REASON_CONFIG "provider-misconfigured"   /* e.g. no model anywhere */
#define LLM_REASON_SHUTDOWN "shutting-down"

typedef struct llm_result {
    int code;                  /* 0, or a CX_E* code */
    const char *reason;        /* NULL on success, else one of LLM_REASON_* */
    char detail[512];          /* for the operator: "HTTP 500 from openai: {...}" */
    const char *text;          /* the answer (valid until the callback returns); may be NULL
                                * when the LLM asked for tools */
    const llm_tool_call *tool_calls; /* valid until the callback returns */
    size_t tool_call_count;
    const char *provider;      /* the provider that answered (after a fallback, not the first);
                                * on failure the last one tried */
    const char *finish_reason; /* "stop", "length", "tool_calls" (each type's words mapped
                                * onto these), another word of the provider's, or NULL */
    const char *model;         /* the model the provider says it used, or NULL */
    uint64_t prompt_tokens;
    uint64_t completion_tokens;
    unsigned attempts;         /* over every provider tried */
    long http_status;          /* of the last attempt; 0 when no answer */
    uint64_t elapsed_ms;       /* from llm_chat to the callback */
    /* llm_embed: embedding_count vectors of embedding_dim floats, row after row, in
     * the order of the texts (valid until the callback returns); NULL for a chat */
    const float *embeddings;
    size_t embedding_count, embedding_dim;
} llm_result;

typedef void (*llm_done_fn)(const llm_result *result, void *arg);

typedef struct llm_client llm_client;
typedef struct llm_call llm_call;

/* Checks an `llm.providers` object: every provider's fields, types and
 * ranges, known types, base_url scheme http/https. Fills errors (a new JSON
 * array of strings like "llm.providers.openai.timeout: expected a duration
 * such as 30s, got \"soon\"") and returns the number of them. */
size_t llm_providers_check(const json_t *providers, json_t **errors);

llm_client *llm_client_new(uv_loop_t *loop, const json_t *providers, cx_error *err);
/* Applies a new providers object (SIGHUP). Calls in flight finish with the
 * settings they started with. CX_ECONFIG if the object is invalid (the old
 * settings stay). */
int llm_client_reconfigure(llm_client *c, const json_t *providers, cx_error *err);
/* Cancels every call (their callbacks run with LLM_REASON_SHUTDOWN on the
 * next loop iteration) and closes the handles; the client is freed once the
 * loop has run the closes. */
void llm_client_close(llm_client *c);

/* The configured provider names, in config order. Pointers are valid until
 * the next reconfigure. */
size_t llm_client_providers(const llm_client *c, const char **names, size_t max);
bool llm_client_has_provider(const llm_client *c, const char *name);

/* Starts a call. Returns the call (to cancel) or NULL with err set when the
 * request cannot start (CX_ENOTFOUND unknown provider, CX_EINVAL no model,
 * CX_ENOMEM); then done is never called. */
llm_call *llm_chat(llm_client *c, const llm_request *req, llm_done_fn done, void *arg,
                   cx_error *err);
/* Stops a call; its callback will not run. */
void llm_call_cancel(llm_call *call);

/* An embeddings request: every text becomes one vector. */
typedef struct llm_embed_request {
    const char *provider;      /* name in llm.providers (NULL: the only one) */
    const char *model;         /* the embedding model; required (a provider's `model` is
                                * a chat model) */
    const char *const *texts;  /* UTF-8, not empty; copied by llm_embed */
    size_t count;              /* 1..LLM_EMBED_MAX_TEXTS */
    uint64_t deadline_ms;      /* monotonic ms; 0 = none */
    const char *agent;         /* for logs; may be NULL */
} llm_embed_request;

/* Starts an embeddings call on the provider: `openai` POSTs
 * {base_url}/embeddings {"model", "input": [texts]} and reads data[i].embedding
 * (placed by `index`); `ollama` POSTs {base_url}/api/embed {"model", "input"} and reads
 * embeddings[i]. It shares the provider's queue (max_concurrency), auth, timeout,
 * retries, backoff and Retry-After with chat calls, but never falls back to another
 * provider: another model's vectors could not be compared with these. The answer is
 * checked strictly (one vector per text, every vector with the same number of
 * dimensions, 1..LLM_EMBED_MAX_DIM, finite 32-bit numbers, at most
 * LLM_EMBED_MAX_RESPONSE bytes); anything else fails with LLM_REASON_MALFORMED or
 * _EMPTY. done gets the vectors in result->embeddings. NULL with err set when the
 * request cannot start (CX_ENOTFOUND unknown provider, CX_EINVAL no model, a type
 * without embeddings, bad texts; CX_ENOMEM); then done is never called. */
llm_call *llm_embed(llm_client *c, const llm_embed_request *req, llm_done_fn done, void *arg,
                    cx_error *err);
/* The type of provider `name` in an `llm.providers` object (its `type`, else the
 * name when it is a type), or NULL when there is no such provider or its type is
 * unknown. With name NULL: NULL. */
const char *llm_provider_type(const json_t *providers, const char *name);
/* The first provider (in config order) of type `type`, or NULL. */
const char *llm_provider_first_of_type(const json_t *providers, const char *type);

/* Per provider: {"openai": {"type", "base_url", "in_flight", "queued", "requests",
 * "errors", "retries", "fallbacks", "prompt_tokens", "completion_tokens", "last_error"}}.
 * requests counts calls the provider was given (first or as a fallback); fallbacks
 * counts calls it failed and passed on to its fallback (they count as errors too). */
json_t *llm_client_stats(const llm_client *c);

/* ---- Pieces exposed for unit tests ------------------------------------------------------------ */

/* Retry-After as seconds ("2") or an HTTP date, relative to now_epoch_s;
 * returns ms capped at LLM_RETRY_AFTER_MAX_MS, or -1 if unparsable. */
int64_t llm_parse_retry_after(const char *value, int64_t now_epoch_s);
/* Backoff before retry number `attempt` (1-based): base * 2^(attempt-1),
 * capped, with full jitter from `random` in [0, 1). */
uint64_t llm_backoff_ms(unsigned attempt, double random);
/* The OpenAI chat completions body for a request (model resolved). */
json_t *llm_openai_request_json(const llm_request *req, const char *model);
/* Parses an OpenAI chat completions response body into result fields.
 * text/finish_reason/model are set to strdup'd strings in *text etc.; text
 * is NULL when the answer only asks for tools (their calls are not returned
 * here; the client reads them through its protocol table).
 * Returns 0, or a CX_E* code with reason (LLM_REASON_MALFORMED / _EMPTY)
 * and detail. */
int llm_openai_parse_response(const char *body, size_t len, char **text, char **finish_reason,
                              char **model, uint64_t *prompt_tokens, uint64_t *completion_tokens,
                              const char **reason, char *detail, size_t detail_size);

#endif
