/* main.c — `understudy agent --config FILE` runs the agent, `understudy recover` and `understudy
 * keygen` work on local files; every other command is the CLI. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/recover.h"
#include "cli/cli.h"
#include "config/config.h"
#include "lib/key.h"
#include "lib/log.h"

static int agent_usage(int rc)
{
    if (rc == 0)
        us_cli_help("agent", stdout);
    else
        fputs("usage: understudy agent --config FILE [--debug]\n"
              "run `understudy help agent` for more\n",
              stderr);
    return rc;
}

static int run_agent(int argc, char **argv)
{
    const char *path = NULL;
    int level = US_LOG_INFO;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        else if (strcmp(argv[i], "--debug") == 0)
            level = US_LOG_DEBUG;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return agent_usage(0);
        else {
            fprintf(stderr, "understudy agent: unexpected argument '%s'\n", argv[i]);
            return agent_usage(2);
        }
    }
    if (!path) {
        fprintf(stderr, "understudy agent: --config FILE is required\n");
        return agent_usage(2);
    }
    us_node_config *cfg = calloc(1, sizeof *cfg);
    us_errors *err = calloc(1, sizeof *err);
    if (us_config_load_node(path, cfg, err) != 0) {
        for (int i = 0; i < err->n; i++)
            fprintf(stderr, "%s\n", err->msg[i]);
        if (err->dropped)
            fprintf(stderr, "... and %d more problem(s)\n", err->dropped);
        free(cfg);
        free(err);
        return 2;
    }
    free(err);
    us_log_init(cfg->name, level);
    int rc = us_agent_main(cfg);
    free(cfg);
    return rc;
}

static int recover_usage(int rc)
{
    if (rc == 0)
        us_cli_help("recover", stdout);
    else
        fputs("usage: understudy recover --config FILE [--voters N1,N2...] [--yes]\n"
              "run `understudy help recover` for more\n",
              stderr);
    return rc;
}

/* understudy recover: rebuild the voter set from this node's data dir (recover.h). */
static int run_recover(int argc, char **argv)
{
    const char *path = NULL, *voters = NULL;
    bool yes = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        else if (strcmp(argv[i], "--voters") == 0 && i + 1 < argc)
            voters = argv[++i];
        else if (strncmp(argv[i], "--voters=", 9) == 0)
            voters = argv[i] + 9;
        else if (strcmp(argv[i], "--yes") == 0)
            yes = true;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return recover_usage(0);
        else {
            fprintf(stderr, "understudy recover: unexpected argument '%s'\n", argv[i]);
            return recover_usage(2);
        }
    }
    if (!path) {
        fprintf(stderr, "understudy recover: --config FILE is required\n");
        return recover_usage(2);
    }
    us_node_config *cfg = calloc(1, sizeof *cfg);
    us_errors *err = calloc(1, sizeof *err), *warn = calloc(1, sizeof *warn);
    if (!cfg || !err || !warn || us_config_check_node(path, cfg, err, warn) != 0) {
        for (int i = 0; err && i < err->n; i++)
            fprintf(stderr, "%s\n", err->msg[i]);
        if (err && err->dropped)
            fprintf(stderr, "... and %d more problem(s)\n", err->dropped);
        free(cfg);
        free(err);
        free(warn);
        return 2;
    }
    free(err);
    free(warn);
    int rc = us_agent_recover(cfg, voters, yes);
    free(cfg);
    return rc;
}

/* understudy keygen [--token] FILE: a new cluster key or API token, never over an existing file. */
static int run_keygen(int argc, char **argv)
{
    bool token = false;
    const char *path = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--token") == 0)
            token = true;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            us_cli_help("keygen", stdout);
            return 0;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr,
                    "understudy keygen: unexpected argument '%s'\n"
                    "usage: understudy keygen [--token] FILE\n",
                    argv[i]);
            return 2;
        } else
            path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: understudy keygen [--token] FILE\n");
        return 2;
    }
    char err[512];
    if (us_keygen(path, token, err, sizeof err) != 0) {
        fprintf(stderr, "understudy keygen: %s\n", err);
        return 1;
    }
    printf("wrote a new %s to %s (mode 0600)\n", token ? "API token" : "cluster key", path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "agent") == 0)
        return run_agent(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "recover") == 0)
        return run_recover(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
        return run_keygen(argc, argv);
    return us_cli_main(argc, argv);
}
