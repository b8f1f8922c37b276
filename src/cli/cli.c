/* cli.c — see cli.h. The command line against the tables: options (here) and commands
 * (commands.h). Everything a command line can get wrong is found before any agent is asked. */
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/http.h"
#include "cli/render.h"
#include "lib/suggest.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- the options ---- */

enum {
    O_API,
    O_JSON,
    O_HELP,
    O_TOKEN_FILE,
    O_CONFIG,
    O_CACERT,
    /* The command options, in the order their misuse is reported. */
    O_TO,
    O_SERVICE,
    O_LIMIT,
    O_FOLLOW,
    O_NODE,
    O_LOCAL,
    O_FORCE,
    O_COUNT
};

typedef struct option {
    const char *name;
    const char *alias; /* a short form, or NULL */
    unsigned cmd_opt;  /* US_OPT_* for a command option, 0 for a general one */
    /* A value option ("--name VALUE" or "--name=VALUE"): what its missing value is (NULL for a
     * flag); whether "" is a value (an empty --api is the default, an empty --limit is a bad
     * number, an empty --to is refused after the arguments); and the command whose usage follows
     * the complaint (NULL: none, "": the command given so far). */
    const char *needs;
    bool empty_ok;
    const char *usage_of;
} option;

static const option options[O_COUNT] = {
    [O_API] = {"--api", NULL, 0, "--api needs a value: --api HOST:PORT", true, NULL},
    [O_JSON] = {"--json", NULL, 0, NULL, false, NULL},
    [O_HELP] = {"--help", "-h", 0, NULL, false, NULL},
    [O_TOKEN_FILE] = {"--token-file", NULL, 0, "--token-file needs a value: --token-file PATH",
                      false, NULL},
    [O_CONFIG] = {"--config", NULL, 0, "--config needs a value: --config NODE.CONF", false, NULL},
    [O_CACERT] = {"--cacert", NULL, 0, "--cacert needs a value: --cacert PATH", false, NULL},
    [O_TO] = {"--to", NULL, US_OPT_TO, "--to needs a node name", true, "switchover"},
    [O_SERVICE] = {"--service", NULL, US_OPT_SERVICE, "--service needs a service name", false,
                   "events"},
    [O_LIMIT] = {"--limit", NULL, US_OPT_LIMIT,
                 "--limit needs a number from 1 to " STR(US_EVENTS_PAGE), true, "events"},
    [O_FOLLOW] = {"--follow", "-f", US_OPT_FOLLOW, NULL, false, NULL},
    [O_NODE] = {"--node", NULL, US_OPT_NODE, "--node needs a node name", false, ""},
    [O_LOCAL] = {"--local", NULL, US_OPT_LOCAL, NULL, false, NULL},
    [O_FORCE] = {"--force", NULL, US_OPT_FORCE, NULL, false, NULL},
};

/* The option argv[*i] is, with its value in *val (NULL when missing; the option's name for a
 * flag), or -1 when it is none of ours. */
static int match_option(int argc, char **argv, int *i, const char **val)
{
    const char *a = argv[*i];
    for (int o = 0; o < O_COUNT; o++) {
        const option *opt = &options[o];
        if (!opt->needs) {
            if (strcmp(a, opt->name) == 0 || (opt->alias && strcmp(a, opt->alias) == 0)) {
                *val = opt->name;
                return o;
            }
            continue;
        }
        size_t n = strlen(opt->name);
        if (strncmp(a, opt->name, n) != 0 || (a[n] != '\0' && a[n] != '='))
            continue;
        *val = a[n] == '=' ? a + n + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
        return o;
    }
    return -1;
}

/* "switchover", "events and reset": the commands that take a command option. */
static void takers(unsigned cmd_opt, char *buf, size_t size)
{
    const char *names[8];
    int n = 0;
    for (size_t i = 0; i < us_n_commands && n < 8; i++)
        if (us_commands[i].opts != US_OPT_IGNORED && (us_commands[i].opts & cmd_opt))
            names[n++] = us_commands[i].name;
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < n && used < size; k++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s",
                                 k == 0       ? ""
                                 : k == n - 1 ? " and "
                                              : ", ",
                                 names[k]);
}

/* ---- the command line ---- */

/* Columns of the terminal on stdout (80 when it does not say), 0 when stdout is no terminal. */
static int terminal_width(void)
{
    if (!isatty(STDOUT_FILENO))
        return 0;
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

/* The subcommand `word` of cmd, or NULL after saying which ones there are. */
static const us_subcommand *find_sub(const us_command *cmd, const char *word, int *rc)
{
    const char *names[8];
    char list[128] = "", h[96];
    size_t n = 0, used = 0;
    for (const us_subcommand *s = cmd->subs; s->name && n < 8; s++) {
        if (word && strcmp(s->name, word) == 0)
            return s;
        names[n++] = s->name;
        used +=
            (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", s->name);
    }
    *rc =
        word ? us_command_usage_error(cmd, "unknown %s subcommand \"%s\" (%s)%s", cmd->name, word,
                                      list, us_render_hint(h, sizeof h, us_suggest(word, names, n)))
             : us_command_usage_error(cmd, "missing subcommand (%s)", list);
    return NULL;
}

static int run(us_client *c, int argc, char **argv)
{
    const char *val[O_COUNT] = {0};
    const char *words[US_CMD_MAX_ARGS]; /* the command, its subcommand and arguments */
    int nwords = 0;
    bool opts_done = false;
    char h[96];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const us_command *so_far = nwords ? us_command_find(words[0]) : NULL;
        if (opts_done || a[0] != '-' || a[1] == '\0') {
            if (nwords == US_CMD_MAX_ARGS)
                return us_command_usage_error(so_far, "too many arguments");
            words[nwords++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            opts_done = true;
            continue;
        }
        const char *v = NULL;
        int o = match_option(argc, argv, &i, &v);
        if (o < 0) {
            const char *names[O_COUNT];
            for (int k = 0; k < O_COUNT; k++)
                names[k] = options[k].name;
            char typed[64];
            snprintf(typed, sizeof typed, "%.*s", (int)strcspn(a, "="), a);
            return us_command_usage_error(
                so_far, "unknown option %s%s", a,
                us_render_hint(h, sizeof h, us_suggest(typed, names, O_COUNT)));
        }
        const option *opt = &options[o];
        if (!v || (!v[0] && !opt->empty_ok))
            return us_command_usage_error(!opt->usage_of     ? NULL
                                          : opt->usage_of[0] ? us_command_find(opt->usage_of)
                                                             : so_far,
                                          "%s", opt->needs);
        val[o] = v;
    }

    c->out.json = val[O_JSON] != NULL;
    if (nwords == 0) {
        us_commands_overview(val[O_HELP] ? stdout : stderr);
        return val[O_HELP] ? US_EXIT_OK : US_EXIT_USAGE;
    }
    const us_command *cmd = us_command_find(words[0]);
    if (!cmd)
        return us_command_usage_error(NULL, "unknown command \"%s\"%s", words[0],
                                      us_render_hint(h, sizeof h, us_command_suggest(words[0])));
    if (val[O_HELP]) {
        us_command_help(cmd, stdout);
        return US_EXIT_OK;
    }
    if (!cmd->run && !cmd->subs) /* main() runs them before the client sees the arguments */
        return us_command_usage_error(cmd, "`%s` takes no client options: give it first",
                                      cmd->name);

    us_cmd_args args = {.limit = 100};
    if (cmd->opts != US_OPT_IGNORED) {
        for (int o = 0; o < O_COUNT; o++) {
            if (val[o] && options[o].cmd_opt && !(cmd->opts & options[o].cmd_opt)) {
                char list[128];
                takers(options[o].cmd_opt, list, sizeof list);
                return us_command_usage_error(cmd, "%s only applies to %s", options[o].name, list);
            }
        }
        if (val[O_LIMIT]) {
            char *end;
            long v = strtol(val[O_LIMIT], &end, 10);
            if (!val[O_LIMIT][0] || *end || v < 1 || v > US_EVENTS_PAGE)
                return us_command_usage_error(cmd,
                                              "--limit needs a number from 1 to %d, got \"%s\"",
                                              US_EVENTS_PAGE, val[O_LIMIT]);
            args.limit = (int)v;
        }
        args.to = val[O_TO];
        args.service = val[O_SERVICE];
        args.node = val[O_NODE];
        args.follow = val[O_FOLLOW] != NULL;
        args.own_view = val[O_LOCAL] != NULL;
        args.force = val[O_FORCE] != NULL;
    }

    /* The subcommand, then the arguments after it. */
    int first = 1;
    us_cmd_fn *handler = cmd->run;
    if (cmd->subs) {
        int rc = US_EXIT_USAGE;
        const us_subcommand *sub = find_sub(cmd, nwords > 1 ? words[1] : NULL, &rc);
        if (!sub)
            return rc;
        args.sub = sub->name;
        handler = sub->run;
        first = 2;
    }
    args.n = nwords - first;
    if (args.n < cmd->min_args)
        return us_command_usage_error(cmd, "missing %s", cmd->arg_name);
    if (args.n > cmd->max_args)
        return us_command_usage_error(cmd, "unexpected argument \"%s\"",
                                      words[first + cmd->max_args]);
    for (int k = 0; k < args.n; k++)
        args.arg[k] = words[first + k];
    if (args.to && !args.to[0])
        return us_command_usage_error(cmd, "%s", options[O_TO].needs);

    c->out.color = isatty(STDOUT_FILENO) && !(getenv("NO_COLOR") && getenv("NO_COLOR")[0]);
    c->out.width = terminal_width();
    if (!cmd->local) {
        int rc =
            us_http_setup(&c->http, val[O_API], val[O_CACERT], val[O_TOKEN_FILE], val[O_CONFIG]);
        if (rc != 0)
            return rc;
    }
    return handler(c, &args);
}

int us_cli_main(int argc, char **argv)
{
    us_http_init();
    us_client *c = calloc(1, sizeof *c);
    int rc = c ? run(c, argc, argv) : us_render_fail("out of memory");
    free(c);
    us_http_cleanup();
    fflush(stdout);
    fflush(stderr);
    return rc;
}

int us_cli_help(const char *name, FILE *out)
{
    const us_command *cmd = name ? us_command_find(name) : NULL;
    if (name && !cmd)
        return -1;
    if (cmd)
        us_command_help(cmd, out);
    else
        us_commands_overview(out);
    return 0;
}
