/* Shared inside src/llm only: one provider's settings as the client uses
 * them, and the OpenAI helpers the client needs beyond the public header.
 *
 * Settings are immutable once built and reference-counted, so a call keeps
 * the settings it started with across a reconfigure (SIGHUP). */
#ifndef CAXTON_LLM_LLM_INTERNAL_H
#define CAXTON_LLM_LLM_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define LLM_PROVIDERS_MAX 64      /* providers in one configuration */
#define LLM_PROVIDER_NAME_MAX 64  /* bytes in a provider name */

typedef struct llm_settings {
    unsigned refs;
    char *name;            /* the key in llm.providers */
    const char *type;      /* "openai" (a constant) */
    char *base_url;        /* without a trailing slash */
    char *url;             /* base_url + "/chat/completions" */
    char *api_key;         /* NULL when not set; never logged */
    char *model;           /* NULL when not set */
    uint64_t timeout_ms;   /* per attempt */
    unsigned retries;      /* after the first attempt */
    unsigned max_concurrency;
} llm_settings;

/* Builds one settings object per provider, in config order, from an object
 * llm_providers_check accepted. CX_ECONFIG (first problem in err) if not. */
int llm_settings_build(const json_t *providers, llm_settings ***out, size_t *count,
                       cx_error *err);
/* Drops one reference; the last one wipes the key and frees. */
void llm_settings_release(llm_settings *s);
/* Frees an array from llm_settings_build, releasing each element. */
void llm_settings_release_all(llm_settings **list, size_t count);

/* The provider's own explanation in an error body ({"error":{"message":..}}
 * or {"error":"..."} or {"message":...}), quoted and cut for an operator, or
 * a quoted start of the body when it has none; secret (may be NULL) is
 * replaced by "***". Empty when the body is. */
void llm_openai_error_text(const char *body, size_t len, const char *secret, char *out,
                           size_t size);

/* Replaces every occurrence of secret in s (NUL-terminated) with "***". */
void llm_redact(char *s, const char *secret);

#endif
