/* cli.h — the client side of the `understudy` binary: every command except `agent` talks to an
 * agent's HTTP API (blocking sockets, 5 s timeouts), follows "not the leader" redirects, waits
 * out a leader election, and for switchover / node removal polls the status until the change
 * is done. Changes are sent with by=CLI (the cause of the events they record says so).
 * `events --follow` polls every 250 ms until SIGINT/SIGTERM (exit 0; the signal dispositions are
 * restored before returning) or until the agent stays unreachable for 5 s (exit 1).
 *
 * `check-config FILE` asks no agent: it validates a node config or a services file locally and
 * creates nothing.
 * Human output is coloured only when stdout is a terminal and NO_COLOR is unset or empty; on a
 * terminal, tables cut their last column to its width. --json works with every command that
 * prints something (status, events, version, check-config, and the changes).
 *
 * Exit status: 0 success, 1 the request was refused or failed (agent unreachable included),
 * 2 usage error (unknown command or option, missing argument, unreadable file; an unknown
 * command or option near a known one gets a "did you mean" hint) and check-config's verdict
 * "the file has problems".
 *
 * This header is the client's entry point; its parts are commands.h (the commands as rows),
 * http.h (requests to an agent) and render.h (what is printed).
 */
#ifndef US_CLI_H
#define US_CLI_H

#include <stdio.h>

/* argv as main() got it (argv[0] is the program name). Returns the exit status; prints results
 * on stdout and errors on stderr. Does not exit and keeps no state between calls. */
int us_cli_main(int argc, char **argv);

/* Print the overview (command NULL) or one command's usage, options, examples and exit status
 * (`agent` included, which main.c runs). -1 for an unknown command. */
int us_cli_help(const char *command, FILE *out);

#endif
