/* commands.h — the commands of `understudy` as rows of one table: a command's name, its handler,
 * its subcommands, how many arguments it takes, which command options it accepts, and its help
 * text. cli.c parses the command line, checks it against the row (unknown command or option,
 * arguments, options that do not apply) and only then calls the handler, so a handler gets
 * arguments that are already checked. A new command is a handler in commands.c and a row in
 * us_commands; a new command option is also a row of cli.c's option table.
 *
 * Handlers print their result on stdout (render.h) and return the exit status; every handler
 * except check-config and help talks to an agent through http.h. */
#ifndef US_COMMANDS_H
#define US_COMMANDS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/http.h"
#include "cli/render.h"

#define US_EVENTS_PAGE 256 /* events asked for per request (the API answers up to 1000) */
#define US_CMD_MAX_ARGS 8  /* words on the command line that are no option, the command's too */

/* The command options, as a command's row lists those it accepts. (The general ones, --api,
 * --json, --token-file, --config, --cacert and --help, go with every command.) */
enum {
    US_OPT_TO = 1u << 0,      /* --to NODE */
    US_OPT_SERVICE = 1u << 1, /* --service S */
    US_OPT_LIMIT = 1u << 2,   /* --limit N */
    US_OPT_FOLLOW = 1u << 3,  /* --follow */
    US_OPT_NODE = 1u << 4,    /* --node N */
    US_OPT_LOCAL = 1u << 5,   /* --local: the asked node's own view, not the leader's */
    US_OPT_FORCE = 1u << 6,   /* --force */
    US_OPT_IGNORED = ~0u,     /* the command ignores them all (help) */
};

/* What a handler is run with. */
typedef struct us_client {
    us_http http;  /* set up (us_http_setup) unless the command is `local` */
    us_render out; /* --json, and colour and width when stdout is a terminal */
} us_client;

/* A command line as checked against its row. */
typedef struct us_cmd_args {
    const char *sub;                  /* the subcommand, when the command has them */
    const char *arg[US_CMD_MAX_ARGS]; /* the arguments after the command word and subcommand */
    int n;                            /* how many: between the row's min_args and max_args */
    const char *to, *service, *node;  /* the command options' values, NULL when not given */
    int limit;                        /* --limit, 100 when not given */
    bool follow;                      /* --follow */
    bool own_view;                    /* --local */
    bool force;                       /* --force */
} us_cmd_args;

typedef int us_cmd_fn(us_client *c, const us_cmd_args *a);

typedef struct us_subcommand {
    const char *name;
    us_cmd_fn *run;
} us_subcommand;

typedef struct us_command {
    const char *name;
    const char *usage;    /* one line */
    const char *help;     /* what it does */
    const char *options;  /* one per line, indented; NULL for none */
    const char *examples; /* one per line, indented */
    const char *exits;    /* exit status, one per line, indented */
    const char *overview; /* its line(s) in `understudy help` */
    /* The handler, or its subcommands' (a NULL-terminated list, the command's word after its
     * name); both NULL for the commands main.c runs before the client (agent, keygen). */
    us_cmd_fn *run;
    const us_subcommand *subs;
    int min_args, max_args; /* arguments after the command word (and subcommand) */
    const char *arg_name;   /* the missing one, in "missing FILE" */
    unsigned opts;          /* US_OPT_* it accepts */
    bool local;             /* asks no agent: no address or token is looked for */
} us_command;

extern const us_command us_commands[];
extern const size_t us_n_commands;

/* The row of `name`, or NULL. */
const us_command *us_command_find(const char *name);

/* The command name `typed` most likely meant, or NULL (for "did you mean"). */
const char *us_command_suggest(const char *typed);

/* A usage error about `cmd` (its usage line follows the message; NULL: where to find usage).
 * Returns US_EXIT_USAGE. */
int us_command_usage_error(const us_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* `understudy help`: every command in a few lines, the general options and the exit status. */
void us_commands_overview(FILE *out);

/* One command's usage, what it does, options, examples and exit status. */
void us_command_help(const us_command *cmd, FILE *out);

/* One page of GET /v1/events as the agent at h->api answered it: appends its events to `out` and
 * moves `after` past every event the agent looked at; `more` says whether the page was cut, and
 * `first` is the oldest event the agent still keeps. 0, or after explaining it on stderr the HTTP
 * status of a refusal (500 for a 200 without an events list). */
int us_events_page(const us_http *h, const us_reply *rep, uint64_t *after, json_t *out, bool *more,
                   uint64_t *first);

#endif
