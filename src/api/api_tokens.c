/* /api/v1/tokens: list, create (the secret is shown once), revoke.
 * Runs on the loop, which owns state.db; the auth cache is updated in the
 * same step so a revoked token stops working before the reply is sent. */
#include <stdio.h>
#include <string.h>

#include "api/routes.h"
#include "core/log.h"
#include "core/util.h"

static json_t *token_json(const token_record *t)
{
    char created[40], used[40], revoked[40];
    time_format_rfc3339(t->created_at_ms, created, sizeof created);
    time_format_rfc3339(t->last_used_at_ms, used, sizeof used);
    time_format_rfc3339(t->revoked_at_ms, revoked, sizeof revoked);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "id", t->id, "name", t->name, "role",
                          token_role_name(t->role), "created_at", created);
    json_object_set_new(j, "last_used_at", t->last_used_at_ms ? json_string(used) : json_null());
    json_object_set_new(j, "revoked_at", t->revoked_at_ms ? json_string(revoked) : json_null());
    return j;
}

typedef struct token_page {
    json_t *items;
    const char *cursor; /* list after this id */
    bool past_cursor;
    size_t limit;
    const char *next;
    char last_id[TOKEN_ID_LEN + 1];
} token_page;

static int add_token(const token_record *t, void *arg)
{
    token_page *page = arg;
    if (!page->past_cursor) {
        page->past_cursor = strcmp(t->id, page->cursor) == 0;
        return 0;
    }
    if (json_array_size(page->items) == page->limit) {
        page->next = page->last_id;
        return 1;
    }
    json_array_append_new(page->items, token_json(t));
    memcpy(page->last_id, t->id, sizeof page->last_id);
    return 0;
}

void api_tokens_list(http_request *req, http_response *res)
{
    token_page page = {.items = json_array()};
    if (http_page_args(req, res, &page.limit, &page.cursor) < 0) {
        json_decref(page.items);
        return;
    }
    page.past_cursor = page.cursor == NULL;
    cx_error err;
    if (state_token_foreach(req->app->state, add_token, &page, &err) < 0) {
        json_decref(page.items);
        http_reply_internal(res, req, &err);
        return;
    }
    if (page.cursor && !page.past_cursor) {
        json_decref(page.items);
        http_reply_error(res, req, 400, CX_EPARSE, "INVALID_PARAMETER",
                         json_pack("{s:s}", "parameter", "cursor"),
                         "unknown cursor '%.40s'; start again without one", page.cursor);
        return;
    }
    json_t *body = json_pack("{s:o}", "items", page.items);
    json_object_set_new(body, "next_cursor", page.next ? json_string(page.next) : json_null());
    http_reply_json(res, 200, body);
}

void api_tokens_create(http_request *req, http_response *res)
{
    json_t *body = req->body;
    if (!json_is_object(body)) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_REQUEST", NULL,
                         "expected a JSON object {\"role\": \"viewer|operator|admin\", "
                         "\"name\": \"...\"}");
        return;
    }
    const char *role_text = json_string_value(json_object_get(body, "role"));
    const char *name = json_string_value(json_object_get(body, "name"));
    token_role role = token_role_parse(role_text);
    if (role == TOKEN_ROLE_NONE) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_FIELD",
                         json_pack("{s:s}", "field", "role"),
                         "role must be one of viewer, operator, admin");
        return;
    }
    if (!token_name_valid(name)) {
        http_reply_error(res, req, 422, CX_EINVAL, "INVALID_FIELD",
                         json_pack("{s:s}", "field", "name"),
                         "name must be 1 to %d characters of letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit", TOKEN_NAME_MAX);
        return;
    }
    const char *unknown;
    json_t *value;
    json_object_foreach(body, unknown, value) {
        if (strcmp(unknown, "role") != 0 && strcmp(unknown, "name") != 0) {
            http_reply_error(res, req, 422, CX_EINVAL, "INVALID_FIELD",
                             json_pack("{s:s}", "field", unknown),
                             "unknown field '%.64s'; a token takes only role and name", unknown);
            return;
        }
    }
    token_record t;
    char secret[TOKEN_SECRET_LEN + 1];
    cx_error err;
    if (state_token_create(req->app->state, name, role, &t, secret, &err) < 0) {
        http_reply_internal(res, req, &err);
        return;
    }
    auth_upsert(&t);
    state_audit_append(req->app->state, req->who.name, "token.create", t.id,
                       json_pack("{s:s, s:s}", "name", t.name, "role", token_role_name(role)),
                       NULL);
    log_event(LOG_STREAM_AUDIT, LOG_INFO, "auth",
              json_pack("{s:s, s:s, s:s, s:s, s:s}", "actor", req->who.name, "action",
                        "token.create", "token_id", t.id, "token_name", t.name, "role",
                        token_role_name(role)),
              "token %s created", t.id);
    json_t *reply = token_json(&t);
    json_object_set_new(reply, "token", json_string(secret));
    http_reply_json(res, 201, reply);
    memset(secret, 0, sizeof secret);
}

typedef struct admin_census {
    const char *id;
    bool target_is_active_admin;
    int64_t active_admins;
} admin_census;

static int count_admins(const token_record *t, void *arg)
{
    admin_census *c = arg;
    if (t->role == TOKEN_ROLE_ADMIN && !t->revoked_at_ms) {
        c->active_admins++;
        if (strcmp(t->id, c->id) == 0)
            c->target_is_active_admin = true;
    }
    return 0;
}

void api_tokens_revoke(http_request *req, http_response *res)
{
    const char *id = req->params[0];
    token_record t = {0};
    cx_error err;
    /* Revoking the last admin token would leave nobody able to manage tokens. */
    admin_census census = {.id = id};
    if (state_token_foreach(req->app->state, count_admins, &census, &err) < 0) {
        http_reply_internal(res, req, &err);
        return;
    }
    if (census.target_is_active_admin && census.active_admins == 1) {
        http_reply_error(res, req, 409, CX_EEXIST, "LAST_ADMIN_TOKEN", NULL,
                         "%s is the last active admin token; create another first ('caxton "
                         "token create --role admin --name NAME'), then revoke this one",
                         id);
        return;
    }
    int rc = state_token_revoke(req->app->state, id, &t, &err);
    if (rc == CX_ENOTFOUND) {
        http_reply_error(res, req, 404, rc, "TOKEN_NOT_FOUND", NULL, "%s", err.msg);
        return;
    }
    if (rc < 0) {
        http_reply_internal(res, req, &err);
        return;
    }
    auth_upsert(&t);
    state_audit_append(req->app->state, req->who.name, "token.revoke", t.id,
                       json_pack("{s:s}", "name", t.name), NULL);
    log_event(LOG_STREAM_AUDIT, LOG_INFO, "auth",
              json_pack("{s:s, s:s, s:s, s:s}", "actor", req->who.name, "action", "token.revoke",
                        "token_id", t.id, "token_name", t.name),
              "token %s revoked", t.id);
    http_reply_json(res, 200, token_json(&t));
}
