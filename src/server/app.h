/* The running server's shared context, handed to the API layer.
 *
 * Fields marked (loop) are owned by the event loop thread: HTTP threads
 * reach them only through a job posted with dispatch_post(). Fields marked
 * (immutable) are set before the API starts and never change. Atomics may be
 * read anywhere. */
#ifndef CAXTON_SERVER_APP_H
#define CAXTON_SERVER_APP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "server/dispatch.h"
#include "server/state.h"

struct registry;
struct router;
struct llm_client;
struct mcp_hub;
struct memstore;

typedef struct app {
    uv_loop_t *loop;            /* (immutable) */
    dispatch *dispatch;         /* (immutable) thread-safe */
    cx_config *config;          /* (loop) swapped on SIGHUP reload */
    state_db *state;            /* (loop) */
    struct registry *agents;    /* (loop) the agent registry */
    struct router *router;      /* (loop) the message router */
    struct llm_client *llm;     /* (loop) LLM providers */
    struct mcp_hub *tools;      /* (loop) MCP tool servers */
    struct memstore *memory;    /* (loop) the memory store (may be unavailable, never NULL
                                 * once started) */
    char *data_dir;             /* (immutable) absolute */
    char *log_dir;              /* (immutable) */
    char *config_file;          /* (immutable) or NULL */
    char url[192];              /* (immutable) where the API listens */
    char listen[140];           /* (immutable) host:port actually bound */
    bool tls;                   /* (immutable) */
    int pid;                    /* (immutable) */
    uint64_t started_ms;        /* (immutable) wall clock */
    uint64_t loop_heartbeat_ms; /* atomic: last heartbeat tick, monotonic clock */
    bool stopping;              /* atomic: shutdown has begun */
} app;

/* Health of each component, shared by /health/deep and /api/v1/status. */
typedef enum app_health { APP_HEALTH_OK, APP_HEALTH_WARN, APP_HEALTH_FAIL } app_health;

#endif
