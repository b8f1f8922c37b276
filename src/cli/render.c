/* render.c — see render.h. */
#include "cli/render.h"
#include "lib/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int us_render_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("understudy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return US_EXIT_FAILED;
}

int us_render_vusage_error(const char *usage, const char *fmt, va_list ap)
{
    fputs("understudy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    if (usage)
        fprintf(stderr, "usage: %s\n", usage);
    else
        fputs("run `understudy help` for usage\n", stderr);
    return US_EXIT_USAGE;
}

int us_render_usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = us_render_vusage_error(usage, fmt, ap);
    va_end(ap);
    return rc;
}

int us_render_unexpected(const char *api, const char *what)
{
    return us_render_fail("unexpected reply from the agent at %s: %s", api, what);
}

void us_render_body(const char *body, size_t len)
{
    fwrite(body, 1, len, stdout);
    if (len == 0 || body[len - 1] != '\n')
        fputc('\n', stdout);
}

void us_render_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    printf("%s\n", s ? s : "null");
    free(s);
    json_decref(j);
}

const char *us_render_hint(char *buf, size_t size, const char *match)
{
    if (!match)
        return "";
    snprintf(buf, size, " (did you mean \"%s\"?)", match);
    return buf;
}

const char *us_render_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

json_t *us_render_find(json_t *arr, const char *key, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *v = us_render_str(e, key);
        if (v && strcmp(v, name) == 0)
            return e;
    }
    return NULL;
}

#define C_RESET "\033[0m"
#define C_BOLD "\033[1m"
#define C_DIM "\033[2m"
#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_YELLOW "\033[33m"

typedef struct table {
    int ncols;
    int nrows;
    char **text;         /* nrows * ncols */
    const char **colour; /* nrows * ncols, NULL = plain */
} table;

static void table_cell(table *t, int row, int col, const char *colour, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void table_cell(table *t, int row, int col, const char *colour, const char *fmt, ...)
{
    if (row >= t->nrows) {
        size_t n = (size_t)(row + 1) * (size_t)t->ncols;
        t->text = realloc(t->text, n * sizeof *t->text);
        t->colour = realloc(t->colour, n * sizeof *t->colour);
        if (!t->text || !t->colour)
            abort();
        for (size_t i = (size_t)t->nrows * (size_t)t->ncols; i < n; i++) {
            t->text[i] = NULL;
            t->colour[i] = NULL;
        }
        t->nrows = row + 1;
    }
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    size_t i = (size_t)row * (size_t)t->ncols + (size_t)col;
    free(t->text[i]);
    t->text[i] = s;
    t->colour[i] = colour;
}

/* Cut `s` to at most `max` bytes, the last three "...", without splitting a UTF-8 sequence. */
static void cut_text(char *s, int max)
{
    if ((int)strlen(s) <= max || max < 4)
        return;
    int n = max - 3;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    memcpy(s + n, "...", 4);
}

/* Widths come from the plain text so that colour codes do not break the alignment. With
 * `max_width` (a terminal's), the last column is cut so that lines do not wrap, as long as that
 * leaves it a useful width. */
static void table_print(table *t, bool colour, int max_width)
{
    int width[16] = {0};
    for (int r = 0; r < t->nrows; r++)
        for (int col = 0; col < t->ncols; col++) {
            const char *s = t->text[r * t->ncols + col];
            int w = s ? (int)strlen(s) : 0;
            if (w > width[col])
                width[col] = w;
        }
    if (max_width > 0) {
        int before = 0;
        for (int col = 0; col < t->ncols - 1; col++)
            before += width[col] + 2;
        int room = max_width - before;
        if (room >= 8 && width[t->ncols - 1] > room)
            for (int r = 1; r < t->nrows; r++) {
                char *s = t->text[r * t->ncols + t->ncols - 1];
                if (s)
                    cut_text(s, room);
            }
    }
    for (int r = 0; r < t->nrows; r++) {
        for (int col = 0; col < t->ncols; col++) {
            const char *s = t->text[r * t->ncols + col];
            const char *cc = r == 0 ? C_BOLD : t->colour[r * t->ncols + col];
            bool last = col == t->ncols - 1;
            if (colour && cc)
                printf("%s%s%s", cc, s ? s : "", C_RESET);
            else
                fputs(s ? s : "", stdout);
            if (!last)
                printf("%*s", width[col] - (s ? (int)strlen(s) : 0) + 2, "");
        }
        fputc('\n', stdout);
    }
    for (int i = 0; i < t->nrows * t->ncols; i++)
        free(t->text[i]);
    free(t->text);
    free(t->colour);
}

static const char *node_state_colour(const char *state)
{
    if (!state)
        return NULL;
    if (strcmp(state, "alive") == 0)
        return C_GREEN;
    if (strcmp(state, "suspect") == 0)
        return C_YELLOW;
    if (strcmp(state, "dead") == 0)
        return C_RED;
    return C_DIM;
}

/* Wall-clock milliseconds as local time: "10:41:02", or with the date and milliseconds. */
static void local_time(int64_t ms, bool full, char *out, size_t size)
{
    if (ms <= 0) {
        snprintf(out, size, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    char buf[32];
    strftime(buf, sizeof buf, full ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm);
    if (full)
        snprintf(out, size, "%s.%03d", buf, (int)(ms % 1000));
    else
        snprintf(out, size, "%s", buf);
}

/* Self-healing in progress: a pending restart in place, an unhealthy active being stopped. */
static void print_service_notes(json_t *services)
{
    size_t i;
    json_t *s;
    json_array_foreach(services, i, s)
    {
        const char *name = us_render_str(s, "name");
        json_t *restart = json_object_get(s, "restart");
        if (json_is_object(restart)) {
            char at[32];
            local_time(json_integer_value(json_object_get(restart, "at_ms")), false, at, sizeof at);
            printf("%s: restart in place on %s at %s (restart %" JSON_INTEGER_FORMAT
                   " in the window)\n",
                   name ? name : "?",
                   us_render_str(restart, "node") ? us_render_str(restart, "node") : "?", at,
                   json_integer_value(json_object_get(restart, "restarts")));
        }
        if (json_is_true(json_object_get(s, "recover")))
            printf("%s: stopping the failed active instance to recover\n", name ? name : "?");
    }
}

static const char *health_colour(const char *h)
{
    if (!h)
        return NULL;
    if (strcmp(h, "healthy") == 0)
        return C_GREEN;
    if (strcmp(h, "unhealthy") == 0)
        return C_RED;
    return C_DIM;
}

/* One row per instance: role, health, last probe latency, pid, and why it is not well. */
static void print_instances(json_t *services, const us_render *o)
{
    size_t rows = 0, i, k;
    json_t *s, *inst;
    json_array_foreach(services, i, s) rows += json_array_size(json_object_get(s, "instances"));
    if (rows == 0)
        return;
    const bool col = o->color;
    printf("\n%sINSTANCES%s\n", col ? C_BOLD : "", col ? C_RESET : "");
    table t = {.ncols = 7};
    const char *head[] = {"SERVICE", "NODE", "ROLE", "HEALTH", "CHECK", "PID", "NOTE"};
    for (int h = 0; h < 7; h++)
        table_cell(&t, 0, h, NULL, "%s", head[h]);
    int row = 1;
    json_array_foreach(services, i, s)
    {
        json_array_foreach(json_object_get(s, "instances"), k, inst)
        {
            const char *role = us_render_str(inst, "role");
            const char *health = us_render_str(inst, "health");
            json_t *ms = json_object_get(inst, "check_ms");
            json_t *pid = json_object_get(inst, "pid");
            const char *cause = us_render_str(inst, "cause");
            json_int_t restarts = json_integer_value(json_object_get(inst, "restarts"));
            const char *rcause = us_render_str(inst, "restart_cause");
            table_cell(&t, row, 0, NULL, "%s",
                       us_render_str(s, "name") ? us_render_str(s, "name") : "?");
            table_cell(&t, row, 1, NULL, "%s",
                       us_render_str(inst, "node") ? us_render_str(inst, "node") : "?");
            table_cell(&t, row, 2,
                       role && strcmp(role, "active") == 0   ? C_GREEN
                       : role && strcmp(role, "failed") == 0 ? C_RED
                                                             : NULL,
                       "%s", role ? role : "?");
            table_cell(&t, row, 3, health_colour(health), "%s", health ? health : "-");
            if (json_is_integer(ms))
                table_cell(&t, row, 4, NULL, "%" JSON_INTEGER_FORMAT "ms", json_integer_value(ms));
            else
                table_cell(&t, row, 4, NULL, "-");
            if (json_is_integer(pid))
                table_cell(&t, row, 5, NULL, "%" JSON_INTEGER_FORMAT, json_integer_value(pid));
            else
                table_cell(&t, row, 5, NULL, "-");
            char note[1024] = "";
            if (cause)
                snprintf(note, sizeof note, "%s", cause);
            json_t *pos = json_object_get(inst, "position");
            if (json_is_integer(pos)) {
                size_t used = strlen(note);
                snprintf(note + used, sizeof note - used, "%sposition %" JSON_INTEGER_FORMAT,
                         used ? "; " : "", json_integer_value(pos));
            }
            if (json_is_false(json_object_get(inst, "following"))) {
                size_t used = strlen(note);
                snprintf(note + used, sizeof note - used, "%snot following the active yet",
                         used ? "; " : "");
            }
            if (restarts > 0) {
                size_t used = strlen(note);
                snprintf(note + used, sizeof note - used,
                         "%srestarted %" JSON_INTEGER_FORMAT "x%s%s", used ? "; " : "", restarts,
                         rcause ? ": " : "", rcause ? rcause : "");
            }
            table_cell(&t, row, 6, NULL, "%s", note[0] ? note : "-");
            row++;
        }
    }
    table_print(&t, o->color, o->width);
}

/* Failure records (anti-flapping): counts and bans per service and node, only if there are any. */
static void print_failures(json_t *services, const us_render *o)
{
    size_t i, k;
    json_t *s, *f;
    table t = {.ncols = 5};
    int row = 1;
    int64_t now = us_wall_ms();
    json_array_foreach(services, i, s)
    {
        json_array_foreach(json_object_get(s, "failures"), k, f)
        {
            char last[32], until[32];
            local_time(json_integer_value(json_object_get(f, "last_ms")), false, last, sizeof last);
            json_int_t bu = json_integer_value(json_object_get(f, "banned_until_ms"));
            bool banned = json_is_true(json_object_get(f, "banned"));
            local_time(bu, false, until, sizeof until);
            table_cell(&t, row, 0, NULL, "%s",
                       us_render_str(s, "name") ? us_render_str(s, "name") : "?");
            table_cell(&t, row, 1, NULL, "%s",
                       us_render_str(f, "node") ? us_render_str(f, "node") : "?");
            table_cell(&t, row, 2, NULL, "%" JSON_INTEGER_FORMAT,
                       json_integer_value(json_object_get(f, "failures")));
            table_cell(&t, row, 3, NULL, "%s", last);
            if (banned)
                table_cell(&t, row, 4, C_RED, "until %s (%" JSON_INTEGER_FORMAT "s left)", until,
                           (bu - now + 999) / 1000 > 0 ? (bu - now + 999) / 1000 : 0);
            else
                table_cell(&t, row, 4, NULL, "no");
            row++;
        }
    }
    if (row == 1) {
        free(t.text);
        free(t.colour);
        return;
    }
    const bool col = o->color;
    printf("\n%sFAILURES%s\n", col ? C_BOLD : "", col ? C_RESET : "");
    const char *head[] = {"SERVICE", "NODE", "FAILURES", "LAST", "BANNED"};
    for (int h = 0; h < 5; h++)
        table_cell(&t, 0, h, NULL, "%s", head[h]);
    table_print(&t, o->color, o->width);
}

int us_render_status(const us_render *o, json_t *st)
{
    json_t *cluster = json_object_get(st, "cluster");
    json_t *nodes = json_object_get(st, "nodes");
    json_t *services = json_object_get(st, "services");
    if (!json_is_object(cluster) || !json_is_array(nodes) || !json_is_array(services))
        return -1;
    const bool col = o->color;
    const char *name = us_render_str(cluster, "name");
    const char *leader = us_render_str(cluster, "leader");
    bool quorum = json_is_true(json_object_get(cluster, "has_quorum"));
    printf("cluster %s%s%s  leader %s%s%s  term %" JSON_INTEGER_FORMAT "  quorum %s%s%s\n",
           col ? C_BOLD : "", name ? name : "?", col ? C_RESET : "", col && !leader ? C_RED : "",
           leader ? leader : "none", col && !leader ? C_RESET : "",
           json_integer_value(json_object_get(cluster, "term")),
           col ? (quorum ? C_GREEN : C_RED) : "", quorum ? "yes" : "no", col ? C_RESET : "");
    /* An agent that is not caught up with the leader answers from an older state: say so before
     * anything that state shows (an older agent sends no "consistency": nothing to say). */
    json_t *cons = json_object_get(st, "consistency");
    if (json_is_true(json_object_get(cons, "stale"))) {
        const char *node = us_render_str(st, "node");
        const char *why = us_render_str(cons, "reason");
        printf("%sstate of %s may be stale: %s%s\n", col ? C_RED : "", node ? node : "this agent",
               why ? why : "not caught up with the leader", col ? C_RESET : "");
    }

    printf("\n%sNODES%s\n", col ? C_BOLD : "", col ? C_RESET : "");
    table t = {.ncols = 4};
    table_cell(&t, 0, 0, NULL, "NAME");
    table_cell(&t, 0, 1, NULL, "ADDRESS");
    table_cell(&t, 0, 2, NULL, "STATE");
    table_cell(&t, 0, 3, NULL, "VOTER");
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        int row = (int)i + 1;
        const char *nname = us_render_str(n, "name");
        const char *state = us_render_str(n, "state");
        bool is_leader = leader && nname && strcmp(leader, nname) == 0;
        table_cell(&t, row, 0, NULL, "%s%s", nname ? nname : "?", is_leader ? " (leader)" : "");
        table_cell(&t, row, 1, NULL, "%s",
                   us_render_str(n, "address") ? us_render_str(n, "address") : "-");
        bool drained = json_is_true(json_object_get(n, "drained"));
        bool leaving = json_is_true(json_object_get(n, "leaving"));
        table_cell(&t, row, 2, node_state_colour(state), "%s%s%s", state ? state : "?",
                   drained ? ", drained" : "",
                   leaving && !(state && strcmp(state, "left") == 0) ? ", leaving" : "");
        table_cell(&t, row, 3, NULL, "%s",
                   json_is_true(json_object_get(n, "voter")) ? "yes" : "no");
    }
    table_print(&t, o->color, o->width);

    printf("\n%sSERVICES%s\n", col ? C_BOLD : "", col ? C_RESET : "");
    if (json_array_size(services) == 0) {
        printf("(none; add some with `understudy apply FILE`)\n");
        return 0;
    }
    t = (table){.ncols = 6};
    table_cell(&t, 0, 0, NULL, "SERVICE");
    table_cell(&t, 0, 1, NULL, "ACTIVE");
    table_cell(&t, 0, 2, NULL, "HEALTH");
    table_cell(&t, 0, 3, NULL, "EPOCH");
    table_cell(&t, 0, 4, NULL, "STANDBYS");
    table_cell(&t, 0, 5, NULL, "LAST CHANGE");
    json_t *s;
    json_array_foreach(services, i, s)
    {
        int row = (int)i + 1;
        const char *active = us_render_str(s, "active");
        const char *reason = us_render_str(s, "reason");
        bool paused = json_is_true(json_object_get(s, "paused"));
        table_cell(&t, row, 0, paused ? C_YELLOW : NULL, "%s%s",
                   us_render_str(s, "name") ? us_render_str(s, "name") : "?",
                   paused ? " (paused)" : "");
        table_cell(&t, row, 1, active ? C_GREEN : C_RED, "%s", active ? active : "none");
        /* The active instance's health: "-" when there is none, nothing checks it, or the agent
         * does not say. */
        const char *health = NULL;
        json_t *checks = json_object_get(s, "checks");
        if (active && !(json_is_array(checks) && json_array_size(checks) == 0)) {
            json_t *ai = us_render_find(json_object_get(s, "instances"), "node", active);
            health = us_render_str(ai, "health");
        }
        table_cell(&t, row, 2, health_colour(health), "%s", health ? health : "-");
        table_cell(&t, row, 3, NULL, "%" JSON_INTEGER_FORMAT,
                   json_integer_value(json_object_get(s, "epoch")));
        /* Standbys, then instances that are down, so that a missing standby is visible. */
        char standbys[512] = "";
        bool degraded = false;
        for (int pass = 0; pass < 2; pass++) {
            size_t k;
            json_t *inst;
            json_array_foreach(json_object_get(s, "instances"), k, inst)
            {
                const char *node = us_render_str(inst, "node");
                const char *role = us_render_str(inst, "role");
                if (!node || !role || strcmp(role, "active") == 0)
                    continue;
                bool standby = strcmp(role, "standby") == 0;
                if (standby != (pass == 0))
                    continue;
                degraded |= !standby;
                size_t used = strlen(standbys);
                if (standby)
                    snprintf(standbys + used, sizeof standbys - used, "%s%s", used ? ", " : "",
                             node);
                else
                    snprintf(standbys + used, sizeof standbys - used, "%s%s (%s)", used ? ", " : "",
                             node, role);
            }
        }
        table_cell(&t, row, 4, degraded ? C_YELLOW : NULL, "%s", standbys[0] ? standbys : "-");
        table_cell(&t, row, 5, NULL, "%s", reason && reason[0] ? reason : "-");
    }
    table_print(&t, o->color, o->width);
    print_service_notes(services);
    print_instances(services, o);
    print_failures(services, o);
    return 0;
}

static const char *dash(const char *s)
{
    return s && s[0] ? s : "-";
}

void us_render_event(const us_render *o, json_t *e)
{
    if (o->json) {
        char *s = json_dumps(e, JSON_COMPACT);
        printf("%s\n", s ? s : "null");
        free(s);
        return;
    }
    char t[40], change[160];
    local_time(json_integer_value(json_object_get(e, "time_ms")), true, t, sizeof t);
    snprintf(change, sizeof change, "%s -> %s", dash(us_render_str(e, "from")),
             dash(us_render_str(e, "to")));
    printf("%-23s  %-10s  %-6s  %-7s  %-22s  %s\n", t, dash(us_render_str(e, "service")),
           dash(us_render_str(e, "node")), dash(us_render_str(e, "kind")), change,
           dash(us_render_str(e, "cause")));
}

void us_render_event_header(const us_render *o)
{
    if (!o->json)
        printf("%-23s  %-10s  %-6s  %-7s  %-22s  %s\n", "TIME", "SERVICE", "NODE", "KIND",
               "FROM -> TO", "CAUSE");
}
