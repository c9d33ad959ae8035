/* Help text and shell completion, both generated from the command table.
 *
 * `caxton help [group [command]]` and `--help` anywhere print the same pages;
 * `caxton completion bash` prints a bash script that knows every group,
 * command and flag, and which flags take values (so it can skip them when it
 * works out where the cursor is). */
#include <stdio.h>
#include <string.h>

#include "cli/cli_internal.h"
#include "core/util.h"

#define MAX_GROUP_COMMANDS 64
#define OVERVIEW_LIST_MAX 80 /* "group cmd|cmd|..." in the overview, within the 96-byte line */

void cli_command_label(const cli_command *cmd, char *buf, size_t size)
{
    if (cmd->name)
        snprintf(buf, size, "%s %s", cmd->group, cmd->name);
    else
        snprintf(buf, size, "%s", cmd->group);
}

const char *cli_flag_value_name(const cli_flag *f)
{
    if (f->value_name)
        return f->value_name;
    switch (f->kind) {
    case CLI_FILE: return "FILE";
    case CLI_DIR: return "DIR";
    case CLI_DURATION: return "DURATION";
    case CLI_SWITCH: return "";
    default: return "VALUE";
    }
}

static int append_flag_usage(strbuf *out, const cli_flag *f)
{
    if (f->kind == CLI_SWITCH)
        return strbuf_appendf(out, "%s--%s%s", f->required ? "" : "[", f->name,
                              f->required ? "" : "]");
    return strbuf_appendf(out, "%s--%s %s%s", f->required ? "" : "[", f->name,
                          cli_flag_value_name(f), f->required ? "" : "]");
}

int cli_usage_line(const cli_command *cmd, strbuf *out)
{
    char label[96];
    cli_command_label(cmd, label, sizeof label);
    int rc = strbuf_appendf(out, "caxton %s", label);
    if (rc == 0 && cmd->args)
        rc = strbuf_appendf(out, " %s", cmd->args);
    /* Required flags first: they are part of the command's shape. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; rc == 0 && cmd->flags && cmd->flags[i]; i++)
            if (cmd->flags[i]->required == (pass == 0)) {
                rc = strbuf_appends(out, " ");
                if (rc == 0)
                    rc = append_flag_usage(out, cmd->flags[i]);
            }
    if (rc == 0 && (cmd->options & CLI_CMD_WINDOW))
        rc = strbuf_appends(out, " [--last-<duration> | --since TIME --until TIME]");
    return rc;
}

static void print_flag(FILE *out, const cli_flag *f)
{
    char left[64];
    if (f->kind == CLI_SWITCH)
        snprintf(left, sizeof left, "--%s", f->name);
    else
        snprintf(left, sizeof left, "--%s %s", f->name, cli_flag_value_name(f));
    fprintf(out, "  %-24s %s\n", left, f->help);
}

static void print_global_flags(FILE *out)
{
    fprintf(out, "Global flags (accepted anywhere, as --flag VALUE or --flag=VALUE):\n");
    for (size_t i = 0; cli_global_flags[i]; i++)
        print_flag(out, cli_global_flags[i]);
}

static void print_exit_codes(FILE *out)
{
    fprintf(out, "Exit codes: 0 ok, 1 the check found a problem, 2 usage error, "
                 "3 server unreachable or not ready, 4 permission denied.\n");
}

static void print_overview(FILE *out, const cli_table *table)
{
    fprintf(out, "caxton %s: the Caxton multi-agent orchestration server and its client\n\n",
            CAXTON_VERSION);
    fprintf(out, "Usage: caxton <group> [<command>] [ARGS] [--flags]\n\nCommands:\n");
    for (size_t i = 0; i < table->group_count; i++) {
        const cli_group *g = &table->groups[i];
        char left[96];
        if (cli_group_is_command(table, g)) {
            snprintf(left, sizeof left, "%s", g->name);
        } else {
            const cli_command *cmds[MAX_GROUP_COMMANDS];
            size_t n = cli_group_commands(table, g, cmds, MAX_GROUP_COMMANDS);
            size_t used = (size_t)snprintf(left, sizeof left, "%s ", g->name);
            /* Whole names only: a list too long for the line ends in "|...". */
            for (size_t j = 0; j < n && used < sizeof left; j++) {
                size_t need = strlen(cmds[j]->name) + (j ? 1 : 0);
                if (used + need + (j + 1 < n ? 4 : 0) > OVERVIEW_LIST_MAX) {
                    snprintf(left + used, sizeof left - used, "|...");
                    break;
                }
                used += (size_t)snprintf(left + used, sizeof left - used, "%s%s", j ? "|" : "",
                                         cmds[j]->name);
            }
        }
        if (strlen(left) > 34)
            fprintf(out, "  %s\n  %-34s %s\n", left, "", g->summary);
        else
            fprintf(out, "  %-34s %s\n", left, g->summary);
    }
    fprintf(out, "\n");
    print_global_flags(out);
    fprintf(out, "\n");
    print_exit_codes(out);
    fprintf(out, "Run 'caxton help <group>' or 'caxton <group> --help' for details.\n");
}

static void print_command(FILE *out, const cli_command *cmd)
{
    strbuf usage;
    strbuf_init(&usage);
    if (cli_usage_line(cmd, &usage) == 0)
        fprintf(out, "Usage: %s\n\n", usage.data);
    strbuf_free(&usage);
    fprintf(out, "%s.\n", cmd->summary);
    if (cmd->description)
        fprintf(out, "%s\n", cmd->description);
    if (cmd->options & CLI_CMD_OFFLINE)
        fprintf(out, "Works on local files and processes: needs no running server.\n");
    if (cmd->default_timeout_ms && cmd->default_timeout_ms != CLI_DEFAULT_TIMEOUT_MS)
        fprintf(out, "--timeout defaults to %llus for this command.\n",
                (unsigned long long)(cmd->default_timeout_ms / 1000));
    if (cmd->flags && cmd->flags[0]) {
        fprintf(out, "\nFlags:\n");
        for (size_t i = 0; cmd->flags[i]; i++)
            print_flag(out, cmd->flags[i]);
    }
    if (cmd->options & CLI_CMD_WINDOW) {
        fprintf(out, "\nTime window:\n");
        fprintf(out, "  %-24s %s\n", "--last-<duration>", "The last 5min, 1h, 24h, ... up to now");
        fprintf(out, "  %-24s %s\n", "--since TIME", "From TIME: RFC 3339 or a duration ago (2h)");
        fprintf(out, "  %-24s %s\n", "--until TIME", "Up to TIME: RFC 3339 or a duration ago");
    }
    fprintf(out, "\n");
    print_global_flags(out);
}

static void print_group(FILE *out, const cli_table *table, const cli_group *group)
{
    const cli_command *cmds[MAX_GROUP_COMMANDS];
    size_t n = cli_group_commands(table, group, cmds, MAX_GROUP_COMMANDS);
    fprintf(out, "Usage: caxton %s <command> [ARGS] [--flags]\n\n%s.\n\nCommands:\n", group->name,
            group->summary);
    int width = 14; /* the longest command name sets the column, a space after it */
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(cmds[i]->name) + 1 > width)
            width = (int)strlen(cmds[i]->name) + 1;
    for (size_t i = 0; i < n; i++)
        fprintf(out, "  %-*s %s\n", width, cmds[i]->name, cmds[i]->summary);
    fprintf(out, "\nRun 'caxton help %s <command>' for a command's flags.\n", group->name);
}

void cli_print_help(FILE *out, const cli_table *table, const cli_group *group,
                    const cli_command *cmd)
{
    if (cmd)
        print_command(out, cmd);
    else if (group)
        print_group(out, table, group);
    else
        print_overview(out, table);
}

int cmd_help(const cli_invocation *inv)
{
    const cli_table *table = inv->table;
    if (inv->arg_count == 0) {
        cli_print_help(stdout, table, NULL, NULL);
        return CLI_EXIT_OK;
    }
    /* Reuse the parser: `help service start` resolves like `service start`. */
    char *argv[4] = {"caxton", (char *)inv->args[0],
                     inv->arg_count > 1 ? (char *)inv->args[1] : NULL, NULL};
    cli_invocation topic;
    cx_error err;
    cli_parse_result r = cli_parse(table, (int)inv->arg_count + 1, argv, NULL, inv->now_ms,
                                   &topic, &err);
    if (!topic.group || (r == CLI_PARSE_ERROR && !topic.command && inv->arg_count > 1 &&
                         !cli_group_is_command(table, topic.group))) {
        fprintf(stderr, "caxton: %s\n", err.msg);
        return CLI_EXIT_USAGE;
    }
    if (topic.command && cli_group_is_command(table, topic.group) && inv->arg_count > 1) {
        fprintf(stderr, "caxton: '%s' has no commands (see 'caxton help %s')\n",
                topic.group->name, topic.group->name);
        return CLI_EXIT_USAGE;
    }
    cli_print_help(stdout, table, topic.group, topic.command);
    return CLI_EXIT_OK;
}

/* ---- Bash completion ------------------------------------------------------------------------ */

/* The script's fixed part; each @NAME@ is filled from the table. The loop
 * works out the group, its command and the number of arguments so far,
 * skipping flag values (so it must know which flags take one). */
static const char completion_template[] =
    "# bash completion for caxton @VERSION@, generated by 'caxton completion bash'.\n"
    "# Load it with: source <(caxton completion bash)\n"
    "_caxton() {\n"
    "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
    "    local valued=\" @VALUED@ \" multi=\" @MULTI@ \"\n"
    "    local group=\"\" command=\"\" nargs=0 i w\n"
    "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
    "        w=\"${COMP_WORDS[i]}\"\n"
    "        case \"$w\" in\n"
    "            --*=*) ;;\n"
    "            --*) [[ \"$valued\" == *\" $w \"* ]] && ((i++)) ;;\n"
    "            -?*) ;;\n"
    "            *) if [[ -z \"$group\" ]]; then group=\"$w\"\n"
    "               elif [[ -z \"$command\" && \"$multi\" == *\" $group \"* ]]; then\n"
    "                   command=\"$w\"\n"
    "               else ((nargs++)); fi ;;\n"
    "        esac\n"
    "    done\n"
    "    case \"$prev\" in\n"
    "@VALUE_CASES@"
    "    esac\n"
    "    local flags=\"@GLOBAL_FLAGS@\"\n"
    "    case \"$group${command:+ $command}\" in\n"
    "@FLAG_CASES@"
    "    esac\n"
    "    if [[ \"$cur\" == -* ]]; then\n"
    "        COMPREPLY=($(compgen -W \"$flags\" -- \"$cur\")); return\n"
    "    fi\n"
    "    if [[ -z \"$group\" ]]; then\n"
    "        COMPREPLY=($(compgen -W \"@GROUPS@\" -- \"$cur\")); return\n"
    "    fi\n"
    "    if [[ -z \"$command\" && \"$multi\" == *\" $group \"* ]]; then\n"
    "        case \"$group\" in\n"
    "@COMMAND_CASES@"
    "        esac\n"
    "        return\n"
    "    fi\n"
    "    case \"$group${command:+ $command}\" in\n"
    "        help)\n"
    "            if ((nargs == 0)); then\n"
    "                COMPREPLY=($(compgen -W \"@GROUPS@\" -- \"$cur\"))\n"
    "            else\n"
    "                case \"${COMP_WORDS[COMP_CWORD-1]}\" in\n"
    "@HELP_CASES@"
    "                esac\n"
    "            fi ;;\n"
    "        completion) COMPREPLY=($(compgen -W \"bash\" -- \"$cur\")) ;;\n"
    "@ARG_CASES@"
    "    esac\n"
    "}\n"
    "complete -F _caxton caxton\n";

#define MAX_TABLE_FLAGS 128

/* Every flag of the table once: the global ones, then the commands' in order. */
static size_t collect_flags(const cli_table *table, const cli_flag **out)
{
    size_t n = 0;
    for (size_t i = 0; cli_global_flags[i] && n < MAX_TABLE_FLAGS; i++)
        out[n++] = cli_global_flags[i];
    for (size_t i = 0; i < table->command_count; i++)
        for (size_t j = 0; table->commands[i].flags && table->commands[i].flags[j]; j++) {
            const cli_flag *f = table->commands[i].flags[j];
            bool seen = false;
            for (size_t k = 0; k < n && !seen; k++)
                seen = strcmp(out[k]->name, f->name) == 0;
            if (!seen && n < MAX_TABLE_FLAGS)
                out[n++] = f;
        }
    return n;
}

static int append_words(strbuf *out, const char *const *words, size_t n)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = strbuf_appendf(out, "%s%s", i ? " " : "", words[i]);
    return rc;
}

/* `--role) COMPREPLY=(...) ;;` for each flag that takes a value. */
static int append_value_cases(strbuf *out, const cli_flag *const *flags, size_t n)
{
    int rc = strbuf_appends(out, "        --since|--until) return ;;\n");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const cli_flag *f = flags[i];
        size_t choices = 0;
        switch (f->kind) {
        case CLI_SWITCH:
            break;
        case CLI_FILE:
        case CLI_DIR:
            rc = strbuf_appendf(out,
                                "        --%s) COMPREPLY=($(compgen -%c -- \"$cur\")); return ;;\n",
                                f->name, f->kind == CLI_FILE ? 'f' : 'd');
            break;
        case CLI_CHOICE:
            while (f->choices[choices])
                choices++;
            rc = strbuf_appendf(out, "        --%s) COMPREPLY=($(compgen -W \"", f->name);
            rc = rc ? rc : append_words(out, (const char *const *)f->choices, choices);
            rc = rc ? rc : strbuf_appends(out, "\" -- \"$cur\")); return ;;\n");
            break;
        default: /* free text: nothing to offer */
            rc = strbuf_appendf(out, "        --%s) return ;;\n", f->name);
            break;
        }
    }
    return rc;
}

/* `"service stop") flags="$flags --log-dir ..." ;;` for each command with flags. */
static int append_flag_cases(strbuf *out, const cli_table *table)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < table->command_count; i++) {
        const cli_command *cmd = &table->commands[i];
        if (!(cmd->flags && cmd->flags[0]) && !(cmd->options & CLI_CMD_WINDOW))
            continue;
        char label[96];
        cli_command_label(cmd, label, sizeof label);
        rc = strbuf_appendf(out, "        \"%s\") flags=\"$flags", label);
        for (size_t j = 0; rc == 0 && cmd->flags && cmd->flags[j]; j++)
            rc = strbuf_appendf(out, " --%s", cmd->flags[j]->name);
        if (rc == 0 && (cmd->options & CLI_CMD_WINDOW))
            rc = strbuf_appends(out, " --last-5min --last-1h --last-24h --since --until");
        rc = rc ? rc : strbuf_appends(out, "\" ;;\n");
    }
    return rc;
}

/* `service) COMPREPLY=($(compgen -W "start stop ..." -- "$cur")) ;;` per group of commands. */
static int append_command_cases(strbuf *out, const cli_table *table, int indent)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < table->group_count; i++) {
        const cli_group *g = &table->groups[i];
        if (cli_group_is_command(table, g))
            continue;
        const cli_command *cmds[MAX_GROUP_COMMANDS];
        const char *names[MAX_GROUP_COMMANDS];
        size_t n = cli_group_commands(table, g, cmds, MAX_GROUP_COMMANDS);
        for (size_t j = 0; j < n; j++)
            names[j] = cmds[j]->name;
        rc = strbuf_appendf(out, "%*s%s) COMPREPLY=($(compgen -W \"", indent, "", g->name);
        rc = rc ? rc : append_words(out, names, n);
        rc = rc ? rc : strbuf_appends(out, "\" -- \"$cur\")) ;;\n");
    }
    return rc;
}

/* Commands whose arguments are file names. */
static int append_arg_cases(strbuf *out, const cli_table *table)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < table->command_count; i++) {
        const cli_command *cmd = &table->commands[i];
        if (!(cmd->options & CLI_CMD_ARGS_FILES))
            continue;
        char label[96];
        cli_command_label(cmd, label, sizeof label);
        rc = strbuf_appendf(out, "        \"%s\") COMPREPLY=($(compgen -f -- \"$cur\")) ;;\n",
                            label);
    }
    return rc;
}

static int append_placeholder(strbuf *out, const cli_table *table, const char *name, size_t len)
{
    const cli_flag *flags[MAX_TABLE_FLAGS];
    size_t n = collect_flags(table, flags);
#define IS(word) (len == sizeof word - 1 && strncmp(name, word, len) == 0)
    if (IS("VERSION"))
        return strbuf_appends(out, CAXTON_VERSION);
    if (IS("VALUED")) {
        int rc = strbuf_appends(out, "--since --until");
        for (size_t i = 0; rc == 0 && i < n; i++)
            if (flags[i]->kind != CLI_SWITCH)
                rc = strbuf_appendf(out, " --%s", flags[i]->name);
        return rc;
    }
    if (IS("MULTI")) {
        int rc = 0;
        for (size_t i = 0, k = 0; rc == 0 && i < table->group_count; i++)
            if (!cli_group_is_command(table, &table->groups[i]))
                rc = strbuf_appendf(out, "%s%s", k++ ? " " : "", table->groups[i].name);
        return rc;
    }
    if (IS("GLOBAL_FLAGS")) {
        int rc = 0;
        for (size_t i = 0; rc == 0 && cli_global_flags[i]; i++)
            rc = strbuf_appendf(out, "%s--%s", i ? " " : "", cli_global_flags[i]->name);
        return rc;
    }
    if (IS("GROUPS")) {
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < table->group_count; i++)
            rc = strbuf_appendf(out, "%s%s", i ? " " : "", table->groups[i].name);
        return rc;
    }
    if (IS("VALUE_CASES"))
        return append_value_cases(out, flags, n);
    if (IS("FLAG_CASES"))
        return append_flag_cases(out, table);
    if (IS("COMMAND_CASES"))
        return append_command_cases(out, table, 12);
    if (IS("HELP_CASES"))
        return append_command_cases(out, table, 20);
    if (IS("ARG_CASES"))
        return append_arg_cases(out, table);
#undef IS
    return CX_EINTERNAL;
}

int cli_completion_bash(const cli_table *table, strbuf *out)
{
    const char *p = completion_template;
    int rc = 0;
    while (rc == 0 && *p) {
        const char *at = strchr(p, '@');
        if (!at)
            return strbuf_appends(out, p);
        const char *end = strchr(at + 1, '@');
        if (!end)
            return CX_EINTERNAL;
        rc = strbuf_append(out, p, (size_t)(at - p));
        rc = rc ? rc : append_placeholder(out, table, at + 1, (size_t)(end - at - 1));
        p = end + 1;
    }
    return rc;
}

int cmd_completion(const cli_invocation *inv)
{
    const char *shell = inv->args[0];
    if (strcmp(shell, "bash") != 0) {
        fprintf(stderr, "caxton: unsupported shell '%s' (supported: bash)\n", shell);
        return CLI_EXIT_USAGE;
    }
    strbuf script;
    strbuf_init(&script);
    int rc = cli_completion_bash(inv->table, &script);
    if (rc == 0)
        fputs(script.data, stdout);
    else
        fprintf(stderr, "caxton: %s\n", cx_strerror(rc));
    strbuf_free(&script);
    return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_PROBLEM;
}
