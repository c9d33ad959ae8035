/* The `caxton` command line: one binary for the server and its client.
 *
 * `caxton <group> <command> [ARGS] [--flags]`. The command table in cli.c
 * drives dispatch, help, "did you mean" and shell completion. Client
 * commands talk to the server over the REST API (client.c); offline ones
 * work on files. Exit codes: 0 ok, 1 the check found a problem, 2 usage
 * error, 3 server unreachable or not ready, 4 permission denied. */
#ifndef CAXTON_CLI_CLI_H
#define CAXTON_CLI_CLI_H

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_PROBLEM = 1,
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_UNREACHABLE = 3,
    CLI_EXIT_DENIED = 4,
};

int cli_main(int argc, char **argv);

#endif
