/* recover.c — see recover.h. */
#include "agent/recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/fsm.h"
#include "core/model.h"
#include "lib/file.h"
#include "net/transport.h"

#define PROBE_MS 2000
#define PROBE_BODY "{\"probe\": \"understudy recover\"}"

typedef struct names {
    int n;
    uint64_t id[US_MAX_NODES * 3 + 1];
    char name[US_MAX_NODES * 3 + 1][US_NAME_MAX];
} names;

static void names_add(names *t, const char *name)
{
    if (t->n < (int)(sizeof t->id / sizeof t->id[0])) {
        t->id[t->n] = us_node_id(name);
        us_strlcpy(t->name[t->n++], name, US_NAME_MAX);
    }
}

/* A server of a configuration by name when we know it (this node, the members line, the voters
 * asked for), else by its Raft id. */
static const char *name_of(const names *t, uint64_t id, char *buf, size_t len)
{
    for (int i = 0; i < t->n; i++)
        if (t->id[i] == id)
            return t->name[i];
    snprintf(buf, len, "id %016llx", (unsigned long long)id);
    return buf;
}

static const char *role_name(int role)
{
    return role == RAFT_VOTER ? "voter" : role == RAFT_STANDBY ? "standby" : "spare";
}

/* ---- the copy of DATA_DIR/raft ---- */

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[PATH_MAX * 2];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int copy_dir(const char *from, const char *to, char *err, size_t errlen)
{
    DIR *d = opendir(from);
    if (!d) {
        snprintf(err, errlen, "cannot read %.400s: %s", from, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0, files = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char src[PATH_MAX * 2], dst[PATH_MAX * 2];
        snprintf(src, sizeof src, "%s/%s", from, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", to, e->d_name);
        struct stat st;
        if (stat(src, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        char *text = NULL;
        size_t len = 0;
        int r = us_file_read(src, &text, &len);
        int fd = r == 0 ? open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
        if (r != 0 || fd < 0 || write(fd, text, len) != (ssize_t)len) {
            snprintf(err, errlen, "cannot copy %.400s: %s", src, strerror(r ? -r : errno));
            rc = -1;
        }
        if (fd >= 0)
            close(fd);
        free(text);
        files++;
    }
    closedir(d);
    if (rc == 0 && files == 0) {
        snprintf(err, errlen, "%.400s holds no Raft data: nothing to recover", from);
        rc = -1;
    }
    return rc;
}

/* ---- what the log says ---- */

typedef struct found {
    raft_term term;        /* the current term (metadata) */
    raft_index last_index; /* the last entry's */
    raft_term last_term;   /* the last entry's */
    raft_index conf_index; /* where the last configuration is */
    struct raft_configuration conf;
} found;

static void io_closed(struct raft_io *io)
{
    (void)io;
}

static void free_loaded(struct raft_snapshot *snap, struct raft_entry *entries, size_t n)
{
    if (snap) {
        raft_configuration_close(&snap->configuration);
        for (unsigned i = 0; i < snap->n_bufs; i++)
            raft_free(snap->bufs[i].base);
        raft_free(snap->bufs);
        raft_free(snap);
    }
    void *batch = NULL;
    for (size_t i = 0; i < n; i++)
        if (entries[i].batch && entries[i].batch != batch) {
            batch = entries[i].batch;
            raft_free(batch);
        }
    raft_free(entries);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    uv_walk(loop, close_any, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}

/* The replicated state as this log has it: the snapshot, then every command after it (the last
 * ones may not have committed). Only read: node names and the assignments, for the operator. */
/* A private loop with libraft's disk I/O on `dir` (its transport is never started). */
static int open_raft_io(const us_node_config *cfg, const char *dir, uv_loop_t *loop,
                        us_transport *t, struct raft_io *io, char *err, size_t errlen)
{
    uv_loop_init(loop);
    memset(io, 0, sizeof *io);
    int rc = us_transport_init(t, loop, 1000, &cfg->keys, cfg->cluster_name, cfg->name);
    if (rc == 0)
        rc = raft_uv_init(io, loop, dir, &t->t);
    if (rc != 0) {
        snprintf(err, errlen, "raft I/O init failed: %s", raft_strerror(rc));
        loop_finish(loop);
        return -1;
    }
    return 0;
}

static void replay(us_fsm *fsm, struct raft_snapshot *snap, raft_index start,
                   const struct raft_entry *entries, size_t n)
{
    if (snap && snap->n_bufs == 1) {
        fsm->raft.restore(&fsm->raft, &snap->bufs[0]); /* takes the buffer */
        snap->bufs[0].base = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        void *result = NULL;
        if (entries[i].type == RAFT_COMMAND && (!snap || start + i > snap->index))
            fsm->raft.apply(&fsm->raft, &entries[i].buf, &result);
    }
}

/* Load the log kept in `dir` (a copy: loading closes an open segment), find its last
 * configuration, and replay it into `fsm`. */
static int load_log(const us_node_config *cfg, const char *dir, found *f, us_fsm *fsm, char *err,
                    size_t errlen)
{
    uv_loop_t loop;
    us_transport t;
    struct raft_io io;
    if (open_raft_io(cfg, dir, &loop, &t, &io, err, errlen) != 0)
        return -1;
    int rc = io.init(&io, us_node_id(cfg->name), cfg->address);
    struct raft_snapshot *snap = NULL;
    struct raft_entry *entries = NULL;
    size_t n = 0;
    raft_index start = 0;
    raft_id voted = 0;
    if (rc == 0)
        rc = io.load(&io, &f->term, &voted, &snap, &start, &entries, &n);
    if (rc != 0) {
        snprintf(err, errlen, "cannot read the Raft log: %s (%s)", raft_strerror(rc), io.errmsg);
    } else {
        raft_configuration_init(&f->conf);
        f->last_index = snap ? snap->index : 0;
        f->last_term = snap ? snap->term : 0;
        if (snap) {
            for (unsigned i = 0; i < snap->configuration.n; i++)
                raft_configuration_add(&f->conf, snap->configuration.servers[i].id,
                                       snap->configuration.servers[i].address,
                                       snap->configuration.servers[i].role);
            f->conf_index = snap->configuration_index;
        }
        for (size_t i = 0; i < n && rc == 0; i++) {
            raft_index idx = start + i;
            f->last_index = idx;
            f->last_term = entries[i].term;
            if (entries[i].type != RAFT_CHANGE)
                continue;
            struct raft_configuration c;
            raft_configuration_init(&c);
            rc = raft_configuration_decode(&entries[i].buf, &c);
            if (rc != 0) {
                snprintf(err, errlen, "cannot decode the configuration at index %llu: %s",
                         (unsigned long long)idx, raft_strerror(rc));
                raft_configuration_close(&c);
                break;
            }
            raft_configuration_close(&f->conf);
            f->conf = c;
            f->conf_index = idx;
        }
        if (rc == 0 && f->conf.n == 0) {
            snprintf(err, errlen, "the Raft log holds no configuration");
            rc = RAFT_NOTFOUND;
        }
        if (rc != 0)
            raft_configuration_close(&f->conf);
        else
            replay(fsm, snap, start, entries, n);
        free_loaded(snap, entries, n);
    }
    io.close(&io, io_closed);
    loop_finish(&loop);
    raft_uv_close(&io);
    us_transport_close(&t);
    return rc == 0 ? 0 : -1;
}

/* ---- who answers ---- */

typedef struct probe {
    int *pending;
    int status; /* 0: answered; -errno */
} probe;

static void probe_done(void *data, int status, const char *body, size_t len)
{
    (void)body, (void)len;
    probe *p = data;
    p->status = status;
    (*p->pending)--;
}

static void probe_closed(struct raft_uv_transport *t)
{
    (void)t;
}

/* Ask every voter of `c` but this node, at once, over the cluster transport: an answer proves an
 * agent holding the cluster key runs there. status[i] per server (1 for those not asked). */
static void probe_voters(const us_node_config *cfg, const struct raft_configuration *c, int *status)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    us_transport t;
    probe p[US_MAX_NODES * 2];
    int pending = 0;
    bool ok = us_transport_init(&t, &loop, PROBE_MS, &cfg->keys, cfg->cluster_name, cfg->name) == 0;
    for (unsigned i = 0; i < c->n && i < US_MAX_NODES * 2; i++) {
        status[i] = 1;
        if (c->servers[i].role != RAFT_VOTER || c->servers[i].id == us_node_id(cfg->name))
            continue;
        p[i] = (probe){.pending = &pending, .status = -ECANCELED};
        status[i] = -ECANCELED;
        pending++;
        int rc = ok ? us_transport_rpc(&t, c->servers[i].address, PROBE_BODY, sizeof PROBE_BODY - 1,
                                       PROBE_MS, probe_done, &p[i])
                    : -ENOMEM;
        if (rc != 0) {
            p[i].status = rc;
            pending--;
        }
    }
    while (pending > 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    for (unsigned i = 0; i < c->n && i < US_MAX_NODES * 2; i++)
        if (status[i] != 1)
            status[i] = p[i].status;
    if (ok)
        t.t.close(&t.t, probe_closed);
    loop_finish(&loop);
    if (ok)
        us_transport_close(&t);
}

/* ---- writing the new configuration ---- */

static void raft_closed(struct raft *r)
{
    (void)r;
}

static int write_conf(const us_node_config *cfg, const char *dir,
                      const struct raft_configuration *conf, char *err, size_t errlen)
{
    uv_loop_t loop;
    us_transport t;
    struct raft_io io;
    struct raft r;
    static struct raft_fsm fsm = {.version = 1}; /* never called: raft_start is not */
    if (open_raft_io(cfg, dir, &loop, &t, &io, err, errlen) != 0)
        return -1;
    int rc = raft_init(&r, &io, &fsm, us_node_id(cfg->name), cfg->address);
    if (rc != 0) {
        snprintf(err, errlen, "raft init failed: %s", raft_errmsg(&r));
        io.close(&io, io_closed);
    } else {
        rc = raft_recover(&r, conf);
        if (rc != 0)
            snprintf(err, errlen, "raft_recover failed: %s (%s)", raft_strerror(rc),
                     raft_errmsg(&r));
        raft_close(&r, raft_closed);
    }
    loop_finish(&loop);
    raft_uv_close(&io);
    us_transport_close(&t);
    return rc == 0 ? 0 : -1;
}

/* ---- the command ---- */

static int lock_data_dir(const char *data_dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/lock", data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "understudy recover: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr,
                "understudy recover: data dir %s is in use by a running agent: stop it first "
                "(nothing changed)\n",
                data_dir);
        close(fd);
        return -1;
    }
    return fd; /* held until we are done: no agent starts meanwhile */
}

/* The voters asked for: names, this node among them, no repeats. 0 or -1 (message printed). */
static int parse_voters(const us_node_config *cfg, const char *list, names *out)
{
    out->n = 0;
    if (!list) {
        names_add(out, cfg->name);
        return 0;
    }
    char buf[US_MAX_NODES * US_NAME_MAX + 64];
    if (!us_strlcpy(buf, list, sizeof buf)) {
        fprintf(stderr, "understudy recover: --voters: too long\n");
        return -1;
    }
    bool self = false;
    char *save = NULL;
    for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (!us_name_valid(w)) {
            fprintf(stderr, "understudy recover: --voters: \"%s\" is not a node name\n", w);
            return -1;
        }
        for (int i = 0; i < out->n; i++)
            if (strcmp(out->name[i], w) == 0) {
                fprintf(stderr, "understudy recover: --voters: %s is named twice\n", w);
                return -1;
            }
        if (out->n >= US_MAX_NODES) {
            fprintf(stderr, "understudy recover: --voters: at most %d nodes\n", US_MAX_NODES);
            return -1;
        }
        names_add(out, w);
        self |= strcmp(w, cfg->name) == 0;
    }
    if (out->n == 0 || !self) {
        fprintf(stderr,
                "understudy recover: --voters must name this node (%s): it is recovered from "
                "this node's data\n",
                cfg->name);
        return -1;
    }
    return 0;
}

static int find_server(const struct raft_configuration *c, uint64_t id)
{
    for (unsigned i = 0; i < c->n; i++)
        if (c->servers[i].id == id)
            return (int)i;
    return -1;
}

int us_agent_recover(const us_node_config *cfg, const char *voters, bool yes)
{
    names want, known;
    if (parse_voters(cfg, voters, &want) != 0)
        return 2;
    known = want;
    names_add(&known, cfg->name);
    for (int i = 0; i < cfg->n_members; i++)
        names_add(&known, cfg->members[i].name);

    char raft_dir[PATH_MAX + 8], copy[PATH_MAX + 32], err[1024];
    snprintf(raft_dir, sizeof raft_dir, "%s/raft", cfg->data_dir);
    struct stat st;
    if (stat(raft_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "understudy recover: no Raft data at %s: nothing to recover\n", raft_dir);
        return 1;
    }
    int lock_fd = lock_data_dir(cfg->data_dir);
    if (lock_fd < 0)
        return 1;

    int rc = 1;
    found f;
    memset(&f, 0, sizeof f);
    struct raft_configuration next;
    raft_configuration_init(&next);
    snprintf(copy, sizeof copy, "%s/recover.XXXXXX", cfg->data_dir);
    if (!mkdtemp(copy)) {
        fprintf(stderr, "understudy recover: cannot make %s: %s\n", copy, strerror(errno));
        close(lock_fd);
        return 1;
    }
    us_fsm *fsm = calloc(1, sizeof *fsm);
    int lr = fsm ? copy_dir(raft_dir, copy, err, sizeof err) : -1;
    if (!fsm)
        snprintf(err, sizeof err, "out of memory");
    if (lr == 0) {
        us_fsm_init(fsm, NULL, NULL);
        lr = load_log(cfg, copy, &f, fsm, err, sizeof err);
    }
    remove_tree(copy);
    if (lr != 0) {
        fprintf(stderr, "understudy recover: %s (nothing changed)\n", err);
        if (fsm)
            us_fsm_close(fsm);
        free(fsm);
        close(lock_fd);
        return 1;
    }
    const us_state *state = &fsm->state;
    for (int i = 0; i < state->n_nodes; i++)
        names_add(&known, state->nodes[i].name);

    char b1[64];
    printf("node %s, data dir %s\n", cfg->name, cfg->data_dir);
    printf("log: last entry %llu (term %llu), current term %llu\n",
           (unsigned long long)f.last_index, (unsigned long long)f.last_term,
           (unsigned long long)f.term);
    printf("services (kept, with their epochs; as this log has them):\n");
    for (int k = 0; k < state->services.n; k++)
        printf("  %-16s active %-16s epoch %llu\n", state->asg[k].service,
               state->asg[k].active[0] ? state->asg[k].active : "none",
               (unsigned long long)state->asg[k].epoch);
    if (state->services.n == 0)
        printf("  none\n");
    printf("last configuration (entry %llu):\n", (unsigned long long)f.conf_index);
    int status[US_MAX_NODES * 2];
    probe_voters(cfg, &f.conf, status);
    int n_voters = 0, up = 0, others_up = 0;
    for (unsigned i = 0; i < f.conf.n && i < US_MAX_NODES * 2; i++) {
        const struct raft_server *s = &f.conf.servers[i];
        bool self = s->id == us_node_id(cfg->name);
        const char *what = s->role != RAFT_VOTER ? ""
                           : self                ? "this node (its agent is stopped)"
                           : status[i] == 0      ? "ANSWERS: its agent runs"
                                                 : NULL;
        char why[128];
        if (!what) {
            snprintf(why, sizeof why, "no answer (%s)",
                     status[i] == -EACCES ? "does not hold the cluster key" : strerror(-status[i]));
            what = why;
        }
        printf("  %-16s %-21s %-8s %s\n", name_of(&known, s->id, b1, sizeof b1), s->address,
               role_name(s->role), what);
        if (s->role == RAFT_VOTER) {
            n_voters++;
            up += self || status[i] == 0;
            others_up += !self && status[i] == 0;
        }
    }
    int majority = n_voters / 2 + 1;
    if (up >= majority) {
        fprintf(stderr,
                "understudy recover: refused: %d of the %d voters (this node included) are "
                "reachable, a majority (%d): the cluster can elect a leader, so start this agent "
                "instead (nothing changed)\n",
                up, n_voters, majority);
        goto out;
    }
    printf("%d of %d voters reachable (this node included), a majority needs %d: the majority "
           "is lost\n",
           up, n_voters, majority);
    if (others_up > 0)
        fprintf(stderr,
                "understudy recover: warning: %d other voter%s still run%s an agent: stop %s "
                "before starting this one (see Losing the majority in docs/operations.md)\n",
                others_up, others_up == 1 ? "" : "s", others_up == 1 ? "s" : "",
                others_up == 1 ? "it" : "them");

    for (int i = 0; i < want.n; i++) {
        int k = find_server(&f.conf, want.id[i]);
        if (k < 0) {
            fprintf(stderr,
                    "understudy recover: --voters: %s is not a member of the last configuration "
                    "(nothing changed)\n",
                    want.name[i]);
            rc = 2;
            goto out;
        }
        raft_configuration_add(&next, want.id[i], f.conf.servers[k].address, RAFT_VOTER);
    }
    printf("new configuration (entry %llu), every earlier entry kept:\n",
           (unsigned long long)f.last_index + 1);
    for (unsigned i = 0; i < next.n; i++)
        printf("  %-16s %-21s voter\n", name_of(&known, next.servers[i].id, b1, sizeof b1),
               next.servers[i].address);
    if (!yes) {
        fprintf(stderr, "understudy recover: not written: run again with --yes to write it\n");
        goto out;
    }
    if (write_conf(cfg, raft_dir, &next, err, sizeof err) != 0) {
        fprintf(stderr, "understudy recover: %s\n", err);
        goto out;
    }
    printf("written. Next:\n");
    int step = 1;
    if (want.n > 1) {
        printf("  %d. copy %s (as it is now) over DATA_DIR/raft of", step++, raft_dir);
        for (int i = 0; i < want.n; i++)
            if (strcmp(want.name[i], cfg->name) != 0)
                printf(" %s", want.name[i]);
        printf(want.n > 2 ? ", their agents stopped\n" : ", its agent stopped\n");
    }
    printf("  %d. start the agent%s\n", step++, want.n > 1 ? "s" : "");
    printf("  %d. remove the lost nodes from the service model:\n", step++);
    for (unsigned i = 0; i < f.conf.n; i++)
        if (find_server(&next, f.conf.servers[i].id) < 0)
            printf("       understudy node remove %s\n",
                   name_of(&known, f.conf.servers[i].id, b1, sizeof b1));
    printf("  never start a lost node with its old data dir: empty it, let it join afresh\n");
    rc = 0;
out:
    raft_configuration_close(&next);
    raft_configuration_close(&f.conf);
    if (fsm)
        us_fsm_close(fsm);
    free(fsm);
    close(lock_fd);
    return rc;
}
