/* Parsing argv against the command table.
 *
 * Two passes. The first finds the words that name the group and command:
 * it must skip flag values, so it treats a flag as taking a value when any
 * command (or the global set) declares it so; the table keeps a flag name's
 * kind the same everywhere (a unit test checks). The second pass, knowing the
 * command, checks every flag strictly: unknown ones get a "did you mean",
 * values are checked by kind (durations, choices). Both `--flag value` and
 * `--flag=value` work, anywhere on the line; `--` ends the flags.
 *
 * Time windows (--last-<duration>, --since, --until) are parsed here too, for
 * the commands that declare CLI_CMD_WINDOW. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_internal.h"
#include "core/units.h"
#include "core/util.h"

static const char *const output_choices[] = {"table", "json", NULL};

static const cli_flag flag_output = {"output", CLI_CHOICE, "table|json", output_choices, false,
                                     "Output format (default table; CAXTON_OUTPUT)"};
static const cli_flag flag_server = {"server", CLI_TEXT, "URL", NULL, false,
                                     "Server URL (CAXTON_SERVER; default from the data dir "
                                     "or the config's api.listen)"};
static const cli_flag flag_token = {"token", CLI_TEXT, "TOKEN", NULL, false,
                                    "API token (CAXTON_TOKEN; default "
                                    "<data_dir>/tokens/admin.token when readable, unless "
                                    "--server or CAXTON_SERVER names the server)"};
static const cli_flag flag_timeout = {"timeout", CLI_DURATION, NULL, NULL, false,
                                      "Time limit (default 10s unless the command says)"};
static const cli_flag flag_config = {"config", CLI_FILE, NULL, NULL, false,
                                     "Config file (CAXTON_CONFIG; default "
                                     "/etc/caxton/caxton.yaml)"};
static const cli_flag flag_data_dir = {"data-dir", CLI_DIR, NULL, NULL, false,
                                       "Data directory (CAXTON_DATA_DIR)"};
static const cli_flag flag_help = {"help", CLI_SWITCH, NULL, NULL, false, "Show help (-h)"};
static const cli_flag flag_version = {"version", CLI_SWITCH, NULL, NULL, false,
                                      "Print the version"};

const cli_flag *const cli_global_flags[] = {
    &flag_output, &flag_server, &flag_token, &flag_timeout, &flag_config,
    &flag_data_dir, &flag_help, &flag_version, NULL,
};

/* Window flags that take a value; --last-<duration> carries its own. */
static const cli_flag flag_since = {"since", CLI_TEXT, "TIME", NULL, false,
                                    "Start of the window: RFC 3339 or a duration ago (2h)"};
static const cli_flag flag_until = {"until", CLI_TEXT, "TIME", NULL, false,
                                    "End of the window: RFC 3339 or a duration ago"};

/* ---- The table ------------------------------------------------------------------------------ */

const cli_group *cli_find_group(const cli_table *table, const char *name)
{
    for (size_t i = 0; i < table->group_count; i++)
        if (strcmp(table->groups[i].name, name) == 0)
            return &table->groups[i];
    return NULL;
}

const cli_command *cli_find_command(const cli_table *table, const char *group, const char *name)
{
    for (size_t i = 0; i < table->command_count; i++) {
        const cli_command *cmd = &table->commands[i];
        if (strcmp(cmd->group, group) != 0)
            continue;
        if ((name == NULL && cmd->name == NULL) ||
            (name && cmd->name && strcmp(cmd->name, name) == 0))
            return cmd;
    }
    return NULL;
}

size_t cli_group_commands(const cli_table *table, const cli_group *group,
                          const cli_command **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < table->command_count; i++)
        if (strcmp(table->commands[i].group, group->name) == 0) {
            if (n < max)
                out[n] = &table->commands[i];
            n++;
        }
    return n < max ? n : max;
}

bool cli_group_is_command(const cli_table *table, const cli_group *group)
{
    return cli_find_command(table, group->name, NULL) != NULL;
}

static const cli_flag *flag_in_list(const cli_flag *const *flags, const char *name, size_t len,
                                    size_t *index)
{
    for (size_t i = 0; flags && flags[i]; i++)
        if (strlen(flags[i]->name) == len && strncmp(flags[i]->name, name, len) == 0) {
            if (index)
                *index = i;
            return flags[i];
        }
    return NULL;
}

/* Whether --name takes a value on any command: used before the command is known. */
static bool flag_takes_value_anywhere(const cli_table *table, const char *name, size_t len)
{
    const cli_flag *f = flag_in_list(cli_global_flags, name, len, NULL);
    if (f)
        return f->kind != CLI_SWITCH;
    if (len == 5 && (strncmp(name, "since", 5) == 0 || strncmp(name, "until", 5) == 0))
        return true;
    for (size_t i = 0; i < table->command_count; i++) {
        f = flag_in_list(table->commands[i].flags, name, len, NULL);
        if (f)
            return f->kind != CLI_SWITCH;
    }
    return false;
}

const char *cli_flag_value(const cli_invocation *inv, const char *name)
{
    size_t index;
    if (!inv->command || !flag_in_list(inv->command->flags, name, strlen(name), &index) ||
        index >= CLI_MAX_FLAGS)
        return NULL;
    return inv->values[index];
}

bool cli_flag_set(const cli_invocation *inv, const char *name)
{
    return cli_flag_value(inv, name) != NULL;
}

size_t cli_flag_values(const cli_invocation *inv, const char *name, const char **out,
                       size_t max)
{
    size_t n = 0, len = strlen(name);
    if (!cli_flag_set(inv, name))
        return 0;
    /* The parser accepted the line, so a value never starts with "--": every
     * "--name" word is the flag, and the word after it its value. */
    for (int i = 1; i < inv->argc && n < max; i++) {
        const char *arg = inv->argv[i];
        if (strcmp(arg, "--") == 0)
            break;
        if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, name, len) != 0)
            continue;
        if (arg[2 + len] == '=')
            out[n++] = arg + 3 + len;
        else if (arg[2 + len] == '\0' && i + 1 < inv->argc)
            out[n++] = inv->argv[++i];
    }
    return n;
}

int cli_flag_count(const cli_invocation *inv, const char *name, uint64_t fallback, uint64_t max,
                   uint64_t *out)
{
    const char *text = cli_flag_value(inv, name);
    *out = fallback;
    if (!text)
        return CLI_EXIT_OK;
    uint64_t value = 0;
    bool ok = text[0] != '\0';
    for (const char *p = text; ok && *p; p++) {
        uint64_t digit = (uint64_t)(*p - '0');
        ok = *p >= '0' && *p <= '9' && digit <= max && value <= (max - digit) / 10;
        value = value * 10 + digit;
    }
    if (!ok || value == 0 || value > max) {
        char quoted[64];
        text_quote(text, quoted, sizeof quoted);
        fprintf(stderr, "caxton: invalid --%s %s: expected a whole number from 1 to %llu\n",
                name, quoted, (unsigned long long)max);
        return CLI_EXIT_USAGE;
    }
    *out = value;
    return CLI_EXIT_OK;
}

/* ---- Time ----------------------------------------------------------------------------------- */

void cli_sleep_ms(uint64_t ms)
{
    struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ; /* left holds what remains */
}

static bool parse_digits(const char **p, int count, int *out)
{
    int v = 0;
    for (int i = 0; i < count; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += count;
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

int cli_parse_rfc3339(const char *text, uint64_t *out_ms, cx_error *err)
{
    const char *p = text;
    int year, month, day, hour = 0, minute = 0, second = 0, millis = 0;
    int64_t offset_min = 0;
    bool ok = parse_digits(&p, 4, &year) && *p++ == '-' && parse_digits(&p, 2, &month) &&
              *p++ == '-' && parse_digits(&p, 2, &day);
    if (ok && *p != '\0') {
        ok = (*p == 'T' || *p == 't' || *p == ' ') && (p++, parse_digits(&p, 2, &hour)) &&
             *p++ == ':' && parse_digits(&p, 2, &minute) && *p++ == ':' &&
             parse_digits(&p, 2, &second);
        if (ok && *p == '.') {
            p++;
            int digits = 0;
            while (*p >= '0' && *p <= '9') {
                if (digits < 3)
                    millis = millis * 10 + (*p - '0');
                digits++;
                p++;
            }
            for (int i = digits; i < 3; i++)
                millis *= 10;
            ok = digits > 0;
        }
        if (ok && (*p == 'Z' || *p == 'z')) {
            p++;
        } else if (ok && (*p == '+' || *p == '-')) {
            int sign = *p++ == '-' ? -1 : 1, oh = 0, om = 0;
            ok = parse_digits(&p, 2, &oh) && *p++ == ':' && parse_digits(&p, 2, &om) &&
                 oh <= 23 && om <= 59;
            offset_min = sign * (oh * 60 + om);
        } else {
            ok = false;
        }
        ok = ok && *p == '\0';
    }
    if (ok)
        ok = year >= 1970 && month >= 1 && month <= 12 && day >= 1 &&
             day <= days_in_month(year, month) && hour <= 23 && minute <= 59 && second <= 60;
    if (!ok)
        return cx_error_set(err, CX_EINVAL,
                            "'%s' is not an RFC 3339 time (example: 2026-01-15T10:00:00Z)", text);
    if (second == 60)
        second = 59; /* a leap second: the epoch has none */
    int64_t secs = days_from_civil(year, (unsigned)month, (unsigned)day) * 86400 + hour * 3600 +
                   minute * 60 + second - offset_min * 60;
    if (secs < 0)
        return cx_error_set(err, CX_EINVAL, "'%s' is before 1970", text);
    *out_ms = (uint64_t)secs * 1000 + (uint64_t)millis;
    return 0;
}

int cli_parse_time(const char *text, uint64_t now_ms, uint64_t *out_ms, cx_error *err)
{
    if (strcmp(text, "now") == 0) {
        *out_ms = now_ms;
        return 0;
    }
    /* A date starts with four digits and a dash; anything else is a duration ago. */
    if (strlen(text) >= 5 && text[4] == '-')
        return cli_parse_rfc3339(text, out_ms, err);
    uint64_t ago;
    cx_error derr;
    if (units_parse_duration_ms(text, &ago, &derr) != 0)
        return cx_error_set(err, CX_EINVAL,
                            "'%s' is neither an RFC 3339 time (2026-01-15T10:00:00Z) nor a "
                            "duration ago (%s)", text, derr.msg);
    if (ago > now_ms)
        return cx_error_set(err, CX_EINVAL, "'%s' ago is before 1970", text);
    *out_ms = now_ms - ago;
    return 0;
}

int cli_window_apply(cli_window *window, const char *name, const char *value, uint64_t now_ms,
                     cx_error *err)
{
    if (str_has_prefix(name, "last-")) {
        const char *duration = name + 5;
        uint64_t ms;
        cx_error derr;
        if (window->from_last)
            return cx_error_set(err, CX_EINVAL, "give only one --last-<duration>");
        if (window->since_ms || window->until_ms)
            return cx_error_set(err, CX_EINVAL, "--%s cannot be combined with --since or --until",
                                name);
        if (units_parse_duration_ms(duration, &ms, &derr) != 0)
            return cx_error_set(err, CX_EINVAL, "--%s: '%s' is not a duration: %s", name,
                                duration, derr.msg);
        if (ms == 0)
            return cx_error_set(err, CX_EINVAL, "--%s: the window must be longer than 0", name);
        window->since_ms = ms < now_ms ? now_ms - ms : 1;
        window->until_ms = 0;
        window->from_last = true;
        window->set = true;
        return 0;
    }
    bool since = strcmp(name, "since") == 0;
    if (!since && strcmp(name, "until") != 0)
        return cx_error_set(err, CX_EINVAL, "--%s is not a window flag", name);
    if (window->from_last)
        return cx_error_set(err, CX_EINVAL, "--%s cannot be combined with --last-<duration>", name);
    uint64_t at;
    if (cli_parse_time(value, now_ms, &at, err) != 0)
        return cx_error_wrap(err, "--%s", name);
    if (since)
        window->since_ms = at ? at : 1;
    else
        window->until_ms = at ? at : 1;
    if (window->since_ms && window->until_ms && window->since_ms >= window->until_ms)
        return cx_error_set(err, CX_EINVAL, "--since must be before --until");
    window->set = true;
    return 0;
}

int cli_window_query(const cli_window *window, strbuf *query)
{
    char buf[40];
    int rc = 0;
    if (window->since_ms) {
        time_format_rfc3339(window->since_ms, buf, sizeof buf);
        rc = strbuf_appendf(query, "%ssince=%s", query->len ? "&" : "", buf);
    }
    if (rc == 0 && window->until_ms) {
        time_format_rfc3339(window->until_ms, buf, sizeof buf);
        rc = strbuf_appendf(query, "%suntil=%s", query->len ? "&" : "", buf);
    }
    return rc;
}

/* ---- Parsing -------------------------------------------------------------------------------- */

typedef struct arg_token {
    const char *name; /* after "--" (or "h" for -h) */
    size_t name_len;
    const char *value; /* after '=', or NULL */
} arg_token;

static bool is_flag(const char *arg)
{
    if (arg[0] != '-' || arg[1] == '\0')
        return false; /* "-" alone is an argument (stdin) */
    if (arg[1] >= '0' && arg[1] <= '9')
        return false; /* "-1": a relative change */
    return true;
}

static arg_token split_flag(const char *arg)
{
    arg_token t = {0};
    t.name = arg + (arg[1] == '-' ? 2 : 1);
    const char *eq = strchr(t.name, '=');
    t.name_len = eq ? (size_t)(eq - t.name) : strlen(t.name);
    t.value = eq ? eq + 1 : NULL;
    return t;
}

static bool token_is(const arg_token *t, const char *name)
{
    return strlen(name) == t->name_len && strncmp(t->name, name, t->name_len) == 0;
}

static void command_label(const cli_invocation *inv, char *buf, size_t size)
{
    if (inv->command)
        cli_command_label(inv->command, buf, size);
    else if (inv->group)
        snprintf(buf, size, "%s", inv->group->name);
    else
        snprintf(buf, size, "caxton");
}

static void help_hint(const cli_invocation *inv, char *buf, size_t size)
{
    if (inv->group)
        snprintf(buf, size, "(see 'caxton help %s')", inv->group->name);
    else
        snprintf(buf, size, "(see 'caxton help')");
}

static cli_parse_result unknown_flag(const cli_invocation *inv, const arg_token *t,
                                     cx_error *err)
{
    const char *names[CLI_MAX_FLAGS + 16];
    size_t n = 0;
    for (size_t i = 0; cli_global_flags[i]; i++)
        names[n++] = cli_global_flags[i]->name;
    for (size_t i = 0; inv->command && inv->command->flags && inv->command->flags[i]; i++)
        if (n < sizeof names / sizeof names[0])
            names[n++] = inv->command->flags[i]->name;
    if (inv->command && (inv->command->options & CLI_CMD_WINDOW)) {
        names[n++] = "since";
        names[n++] = "until";
    }
    char word[128], label[96], hint[96];
    snprintf(word, sizeof word, "%.*s", (int)t->name_len, t->name);
    command_label(inv, label, sizeof label);
    help_hint(inv, hint, sizeof hint);
    const char *suggestion = text_suggest(word, names, n);
    if (suggestion)
        cx_error_set(err, CX_EINVAL, "unknown flag '--%s' for '%s'; did you mean '--%s'? %s", word,
                     label, suggestion, hint);
    else
        cx_error_set(err, CX_EINVAL, "unknown flag '--%s' for '%s' %s", word, label, hint);
    return CLI_PARSE_ERROR;
}

static const char *choices_text(const char *const *choices, char *buf, size_t size)
{
    size_t n = 0, used = 0;
    while (choices[n])
        n++;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < size; i++) {
        const char *sep = i == 0 ? "" : (i + 1 == n ? " or " : ", ");
        int w = snprintf(buf + used, size - used, "%s%s", sep, choices[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

/* Checks a value by the flag's kind. */
static int check_value(const cli_flag *f, const char *value, cx_error *err)
{
    if (f->kind == CLI_DURATION) {
        uint64_t ms;
        cx_error derr;
        if (units_parse_duration_ms(value, &ms, &derr) != 0)
            return cx_error_set(err, CX_EINVAL, "invalid --%s '%s': %s", f->name, value, derr.msg);
        if (ms == 0)
            return cx_error_set(err, CX_EINVAL, "invalid --%s '%s': must be more than 0", f->name,
                                value);
    } else if (f->kind == CLI_CHOICE) {
        size_t n = 0;
        while (f->choices[n])
            n++;
        for (size_t i = 0; i < n; i++)
            if (strcmp(f->choices[i], value) == 0)
                return 0;
        char list[256];
        const char *suggestion = text_suggest(value, (const char *const *)f->choices, n);
        choices_text(f->choices, list, sizeof list);
        if (suggestion)
            return cx_error_set(err, CX_EINVAL,
                                "invalid value '%s' for --%s; did you mean '%s'? (expected %s)",
                                value, f->name, suggestion, list);
        return cx_error_set(err, CX_EINVAL, "invalid value '%s' for --%s (expected %s)", value,
                            f->name, list);
    } else if (f->kind != CLI_SWITCH && value[0] == '\0') {
        return cx_error_set(err, CX_EINVAL, "--%s needs a non-empty value", f->name);
    }
    return 0;
}

static void apply_global(cli_invocation *inv, const cli_flag *f, const char *value)
{
    if (f == &flag_output) {
        inv->output = strcmp(value, "json") == 0 ? CLI_OUTPUT_JSON : CLI_OUTPUT_TABLE;
        inv->output_given = true;
    } else if (f == &flag_server) {
        inv->server = value;
    } else if (f == &flag_token) {
        inv->token = value;
    } else if (f == &flag_timeout) {
        cx_error ignored;
        units_parse_duration_ms(value, &inv->timeout_ms, &ignored); /* checked already */
        inv->timeout_given = true;
    } else if (f == &flag_config) {
        inv->config_path = value;
    } else if (f == &flag_data_dir) {
        inv->data_dir = value;
    } else if (f == &flag_help) {
        inv->help = true;
    } else if (f == &flag_version) {
        inv->version = true;
    }
}

/* Second pass: every flag, strictly, against the known command. */
static cli_parse_result parse_flags(cli_invocation *inv, int argc, char **argv, cx_error *err)
{
    bool help_only = inv->help || inv->version;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0)
            break;
        if (!is_flag(arg))
            continue;
        arg_token t = split_flag(arg);
        if (arg[1] != '-') {
            if (token_is(&t, "h") && !t.value)
                continue; /* -h: seen in the first pass */
            if (help_only)
                continue;
            char label[96], hint[96];
            command_label(inv, label, sizeof label);
            help_hint(inv, hint, sizeof hint);
            cx_error_set(err, CX_EINVAL, "unknown flag '%s' for '%s' %s", arg, label, hint);
            return CLI_PARSE_ERROR;
        }
        size_t index = 0;
        const cli_flag *f = flag_in_list(cli_global_flags, t.name, t.name_len, NULL);
        bool global = f != NULL;
        if (!f && inv->command)
            f = flag_in_list(inv->command->flags, t.name, t.name_len, &index);
        bool window = !f && inv->command && (inv->command->options & CLI_CMD_WINDOW);
        if (window && (token_is(&t, "since") || token_is(&t, "until")))
            f = token_is(&t, "since") ? &flag_since : &flag_until;
        else if (window && t.name_len > 5 && strncmp(t.name, "last-", 5) == 0 && !t.value) {
            char name[96];
            snprintf(name, sizeof name, "%.*s", (int)t.name_len, t.name);
            if (!help_only && cli_window_apply(&inv->window, name, NULL, inv->now_ms, err) != 0)
                return CLI_PARSE_ERROR;
            continue;
        }
        if (!f) {
            if (help_only)
                continue;
            return unknown_flag(inv, &t, err);
        }
        const char *value = t.value;
        if (f->kind == CLI_SWITCH) {
            if (value) {
                if (help_only)
                    continue;
                cx_error_set(err, CX_EINVAL, "flag '--%s' takes no value (got '%s')", f->name,
                             value);
                return CLI_PARSE_ERROR;
            }
            value = "";
        } else if (!value) {
            if (i + 1 >= argc || str_has_prefix(argv[i + 1], "--")) {
                if (help_only)
                    continue;
                cx_error_set(err, CX_EINVAL, "flag '--%s' needs a value (%s)", f->name,
                             cli_flag_value_name(f));
                inv->error_shows_usage = inv->command != NULL;
                return CLI_PARSE_ERROR;
            }
            value = argv[++i];
        }
        if (help_only) {
            /* Of the flags, only --output matters to --version; a bad one is
             * no reason to refuse help or the version. */
            cx_error ignored;
            if (f == &flag_output && check_value(f, value, &ignored) == 0)
                apply_global(inv, f, value);
            continue;
        }
        if (check_value(f, value, err) != 0)
            return CLI_PARSE_ERROR;
        if (f == &flag_since || f == &flag_until) {
            if (cli_window_apply(&inv->window, f->name, value, inv->now_ms, err) != 0)
                return CLI_PARSE_ERROR;
        } else if (global) {
            apply_global(inv, f, value);
        } else {
            if (index >= CLI_MAX_FLAGS) {
                cx_error_set(err, CX_EINTERNAL, "'--%s': the command has too many flags",
                             f->name);
                return CLI_PARSE_ERROR;
            }
            inv->values[index] = value;
        }
    }
    return CLI_PARSE_RUN;
}

/* "did you mean" for an unknown first word: a group, or a command of a group
 * written without its group ("start" -> "service start"). */
static cli_parse_result unknown_group(const cli_table *table, const char *word, cx_error *err)
{
    const char *names[128];
    size_t n = 0;
    for (size_t i = 0; i < table->group_count && n < 128; i++)
        names[n++] = table->groups[i].name;
    const char *suggestion = text_suggest(word, names, n);
    if (suggestion) {
        cx_error_set(err, CX_EINVAL, "unknown command '%s'; did you mean '%s'? (see 'caxton help')",
                     word, suggestion);
        return CLI_PARSE_ERROR;
    }
    for (size_t i = 0; i < table->command_count; i++) {
        const cli_command *cmd = &table->commands[i];
        if (cmd->name && strcmp(cmd->name, word) == 0) {
            cx_error_set(err, CX_EINVAL,
                         "unknown command '%s'; did you mean '%s %s'? (see 'caxton help')", word,
                         cmd->group, cmd->name);
            return CLI_PARSE_ERROR;
        }
    }
    cx_error_set(err, CX_EINVAL, "unknown command '%s' (see 'caxton help')", word);
    return CLI_PARSE_ERROR;
}

static cli_parse_result unknown_command(const cli_table *table, const cli_group *group,
                                        const char *word, cx_error *err)
{
    const cli_command *cmds[64];
    const char *names[64];
    size_t n = cli_group_commands(table, group, cmds, 64);
    for (size_t i = 0; i < n; i++)
        names[i] = cmds[i]->name;
    const char *suggestion = text_suggest(word, names, n);
    if (suggestion)
        cx_error_set(err, CX_EINVAL,
                     "unknown command '%s %s'; did you mean '%s'? (see 'caxton help %s')",
                     group->name, word, suggestion, group->name);
    else
        cx_error_set(err, CX_EINVAL, "unknown command '%s %s' (see 'caxton help %s')", group->name,
                     word, group->name);
    return CLI_PARSE_ERROR;
}

static cli_parse_result missing_command(const cli_table *table, const cli_group *group,
                                        cx_error *err)
{
    const cli_command *cmds[64];
    size_t n = cli_group_commands(table, group, cmds, 64);
    char list[512];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && used < sizeof list; i++) {
        const char *sep = i == 0 ? "" : (i + 1 == n ? " or " : ", ");
        int w = snprintf(list + used, sizeof list - used, "%s%s", sep, cmds[i]->name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    cx_error_set(err, CX_EINVAL, "'%s' needs a command: %s (see 'caxton help %s')", group->name,
                 list, group->name);
    return CLI_PARSE_ERROR;
}

static void apply_environment(cli_invocation *inv)
{
    if (!inv->server)
        inv->server = env_lookup(inv->envp, "CAXTON_SERVER");
    if (inv->server && inv->server[0] == '\0')
        inv->server = NULL;
    if (!inv->token)
        inv->token = env_lookup(inv->envp, "CAXTON_TOKEN");
    if (inv->token && inv->token[0] == '\0')
        inv->token = NULL;
}

cli_parse_result cli_parse(const cli_table *table, int argc, char **argv, char *const *envp,
                           uint64_t now_ms, cli_invocation *inv, cx_error *err)
{
    memset(inv, 0, sizeof *inv);
    inv->table = table;
    inv->envp = envp;
    inv->argc = argc;
    inv->argv = argv;
    inv->now_ms = now_ms;
    cx_error_clear(err);

    /* First pass: the words, and whether help or the version was asked for. */
    const char *words[CLI_MAX_ARGS + 2];
    size_t word_count = 0;
    bool flags_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!flags_done && strcmp(arg, "--") == 0) {
            flags_done = true;
            continue;
        }
        if (!flags_done && is_flag(arg)) {
            arg_token t = split_flag(arg);
            if (arg[1] != '-') {
                inv->help |= token_is(&t, "h") && !t.value;
                continue;
            }
            inv->help |= token_is(&t, "help") && !t.value;
            inv->version |= token_is(&t, "version") && !t.value;
            if (!t.value && flag_takes_value_anywhere(table, t.name, t.name_len) && i + 1 < argc &&
                !str_has_prefix(argv[i + 1], "--"))
                i++;
            continue;
        }
        if (word_count == CLI_MAX_ARGS + 2) {
            cx_error_set(err, CX_EINVAL, "too many arguments (at most %d)", CLI_MAX_ARGS);
            return CLI_PARSE_ERROR;
        }
        words[word_count++] = arg;
    }

    size_t next = 0;
    if (word_count > 0) {
        inv->group = cli_find_group(table, words[0]);
        if (!inv->group)
            return unknown_group(table, words[0], err);
        next = 1;
        if (cli_group_is_command(table, inv->group)) {
            inv->command = cli_find_command(table, inv->group->name, NULL);
        } else if (word_count > 1) {
            inv->command = cli_find_command(table, inv->group->name, words[1]);
            if (!inv->command)
                return unknown_command(table, inv->group, words[1], err);
            next = 2;
        }
    }

    cli_parse_result rc = parse_flags(inv, argc, argv, err);
    if (rc != CLI_PARSE_RUN)
        return rc;
    if (inv->help)
        return CLI_PARSE_HELP;
    if (inv->version) {
        const char *env = env_lookup(envp, "CAXTON_OUTPUT");
        cx_error ignored;
        if (!inv->output_given && env && check_value(&flag_output, env, &ignored) == 0)
            apply_global(inv, &flag_output, env);
        return CLI_PARSE_VERSION;
    }
    if (!inv->group) {
        cx_error_set(err, CX_EINVAL, "no command given (see 'caxton help')");
        return CLI_PARSE_ERROR;
    }
    if (!inv->command)
        return missing_command(table, inv->group, err);

    /* The environment fills what the flags did not say. */
    if (!inv->output_given) {
        const char *env = env_lookup(envp, "CAXTON_OUTPUT");
        if (env && env[0]) {
            if (check_value(&flag_output, env, err) != 0) {
                cx_error_wrap(err, "CAXTON_OUTPUT");
                return CLI_PARSE_ERROR;
            }
            apply_global(inv, &flag_output, env);
        }
    }
    apply_environment(inv);
    if (!inv->timeout_given)
        inv->timeout_ms = inv->command->default_timeout_ms ? inv->command->default_timeout_ms
                                                           : CLI_DEFAULT_TIMEOUT_MS;

    /* Positional arguments and required flags. */
    char label[96];
    cli_command_label(inv->command, label, sizeof label);
    for (size_t i = next; i < word_count; i++) {
        if (inv->arg_count == inv->command->max_args) {
            cx_error_set(err, CX_EINVAL, "unexpected argument '%s' for '%s'", words[i], label);
            inv->error_shows_usage = true;
            return CLI_PARSE_ERROR;
        }
        inv->args[inv->arg_count++] = words[i];
    }
    if (inv->arg_count < inv->command->min_args) {
        cx_error_set(err, CX_EINVAL, "missing %s for '%s'",
                     inv->command->args ? inv->command->args : "argument", label);
        inv->error_shows_usage = true;
        return CLI_PARSE_ERROR;
    }
    for (size_t i = 0; inv->command->flags && inv->command->flags[i]; i++) {
        const cli_flag *f = inv->command->flags[i];
        if (f->required && !inv->values[i]) {
            cx_error_set(err, CX_EINVAL, "missing --%s%s%s for '%s'", f->name,
                         f->kind == CLI_SWITCH ? "" : " ", cli_flag_value_name(f), label);
            inv->error_shows_usage = true;
            return CLI_PARSE_ERROR;
        }
    }
    return CLI_PARSE_RUN;
}
