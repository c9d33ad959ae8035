/* `caxton token create|list|revoke`: API tokens (admin routes /api/v1/tokens).
 *
 * The secret is shown once, by create; the server stores only a hash. revoke
 * takes an id ("tok_...") or a name; a name is resolved through the list and
 * must match exactly one active token, so a typo or a reused name never
 * revokes the wrong one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "cli/output.h"
#include "core/util.h"

int cmd_token_create(const cli_invocation *inv)
{
    client c;
    int rc = cli_connect(inv, &c);
    if (rc != 0)
        return rc;
    json_t *body = json_pack("{s:s, s:s}", "role", cli_flag_value(inv, "role"), "name",
                             cli_flag_value(inv, "name"));
    client_response resp;
    rc = body ? cli_call(&c, "POST", "/api/v1/tokens", body, &resp)
              : (fprintf(stderr, "caxton: out of memory\n"), CLI_EXIT_PROBLEM);
    json_decref(body);
    if (rc == 0) {
        if (inv->output == CLI_OUTPUT_JSON) {
            output_json(stdout, resp.json);
        } else {
            char line[1024];
            snprintf(line, sizeof line, "created token %s (name %s, role %s)",
                     output_string(resp.json, "id", "?"), output_string(resp.json, "name", "?"),
                     output_string(resp.json, "role", "?"));
            output_sanitize(line);
            printf("%s\n", line);
            char *secret = str_dup(output_string(resp.json, "token", "?"));
            if (secret) {
                output_sanitize(secret);
                printf("%s\n", secret);
                free(secret);
            }
            printf("This token is shown only now and cannot be shown again: store it safely.\n");
        }
        client_response_free(&resp);
    }
    client_close(&c);
    return rc;
}

/* Every token, following next_cursor. Returns an exit code; *items is a new array. */
static int fetch_tokens(client *c, json_t **items)
{
    return cli_fetch_list(c, "/api/v1/tokens", 0, items, NULL);
}

int cmd_token_list(const cli_invocation *inv)
{
    client c;
    int rc = cli_connect(inv, &c);
    if (rc != 0)
        return rc;
    json_t *items;
    rc = fetch_tokens(&c, &items);
    client_close(&c);
    if (rc != 0)
        return rc;
    if (inv->output == CLI_OUTPUT_JSON) {
        json_t *doc = json_pack("{s:O, s:n}", "items", items, "next_cursor");
        if (doc)
            output_json(stdout, doc);
        json_decref(doc);
    } else {
        output_table *t = output_table_new(
            6, (const char *[]){"id", "name", "role", "created", "last used", "revoked"});
        size_t i;
        const json_t *item;
        json_array_foreach(items, i, item) {
            if (t)
                output_table_row(t, output_string(item, "id", "?"),
                                 output_string(item, "name", "-"), output_string(item, "role", "?"),
                                 output_string(item, "created_at", "-"),
                                 output_string(item, "last_used_at", "never"),
                                 output_string(item, "revoked_at", "-"));
        }
        if (t) {
            if (output_table_rows(t) == 0)
                printf("no tokens\n");
            else
                output_table_print(t, stdout);
        }
        output_table_free(t);
    }
    json_decref(items);
    return CLI_EXIT_OK;
}

int cli_token_resolve(const json_t *items, const char *id_or_name, const char **id_out,
                      cx_error *err)
{
    if (str_has_prefix(id_or_name, "tok_")) {
        *id_out = id_or_name;
        return 0;
    }
    const char *match = NULL, *revoked = NULL;
    char others[512] = "";
    size_t active = 0, used = 0;
    const char *names[256];
    size_t name_count = 0;
    size_t i;
    const json_t *item;
    json_array_foreach(items, i, item) {
        const char *name = output_string(item, "name", NULL);
        const char *id = output_string(item, "id", NULL);
        bool is_revoked = json_is_string(json_object_get(item, "revoked_at"));
        if (name && !is_revoked && name_count < 256)
            names[name_count++] = name;
        if (!name || !id || strcmp(name, id_or_name) != 0)
            continue;
        if (is_revoked) {
            revoked = id;
            continue;
        }
        active++;
        match = id;
        if (used < sizeof others) {
            int w = snprintf(others + used, sizeof others - used, "%s%s", used ? ", " : "", id);
            if (w > 0)
                used += (size_t)w;
        }
    }
    if (active == 1) {
        *id_out = match;
        return 0;
    }
    if (active > 1)
        return cx_error_set(err, CX_EEXIST,
                            "%zu active tokens are named '%s' (%s); revoke one by its id",
                            active, id_or_name, others);
    if (revoked)
        return cx_error_set(err, CX_EINVAL, "the token named '%s' (%s) is already revoked",
                            id_or_name, revoked);
    const char *suggestion = text_suggest(id_or_name, names, name_count);
    if (suggestion)
        return cx_error_set(err, CX_ENOTFOUND, "no token named '%s'; did you mean '%s'? "
                            "(see 'caxton token list')", id_or_name, suggestion);
    return cx_error_set(err, CX_ENOTFOUND, "no token named '%s' (see 'caxton token list')",
                        id_or_name);
}

int cmd_token_revoke(const cli_invocation *inv)
{
    client c;
    int rc = cli_connect(inv, &c);
    if (rc != 0)
        return rc;
    const char *target = inv->args[0];
    json_t *items = NULL;
    const char *id = target;
    if (!str_has_prefix(target, "tok_")) {
        rc = fetch_tokens(&c, &items);
        cx_error err;
        if (rc == 0 && cli_token_resolve(items, target, &id, &err) != 0) {
            fprintf(stderr, "caxton: %s\n", err.msg);
            rc = CLI_EXIT_PROBLEM;
        }
    }
    strbuf path;
    strbuf_init(&path);
    char *escaped = rc == 0 ? client_url_escape(id) : NULL;
    if (rc == 0 && (!escaped || strbuf_appendf(&path, "/api/v1/tokens/%s", escaped) != 0)) {
        fprintf(stderr, "caxton: out of memory\n");
        rc = CLI_EXIT_PROBLEM;
    }
    free(escaped);
    client_response resp;
    if (rc == 0 && (rc = cli_call(&c, "DELETE", path.data, NULL, &resp)) == 0) {
        if (inv->output == CLI_OUTPUT_JSON) {
            output_json(stdout, resp.json);
        } else {
            char line[512];
            bool by_name = strcmp(id, target) != 0;
            snprintf(line, sizeof line, "revoked token %s%s%s%s",
                     output_string(resp.json, "id", id), by_name ? " (" : "",
                     by_name ? target : "", by_name ? ")" : "");
            output_sanitize(line);
            printf("%s\n", line);
        }
        client_response_free(&resp);
    }
    strbuf_free(&path);
    json_decref(items);
    client_close(&c);
    return rc;
}
