/* fuzz_fsm.c — the replicated state machine as libraft drives it: snapshot restore and command
 * apply (fsm.c's raft_fsm callbacks, which decode the JSON buffers), on a fresh us_fsm.
 *
 * Input: one flag byte, then buffers separated by NUL bytes (a command buffer is NUL-padded JSON,
 * so a NUL ends it anyway). Flag bit 0: the first buffer is a snapshot to restore. Every other
 * buffer is applied as a command. Afterwards the state must survive its own snapshot: taken,
 * restored into a second FSM, and taken again, it encodes the same. */
#include "fuzz.h"

#include "core/fsm.h"
#include "lib/log.h"

#define MAX_COMMANDS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    us_log_init("fuzz", -1);
    return 0;
}

static int changes;

static void on_change(void *data)
{
    (void)data;
    changes++;
}

/* A buffer as libraft hands it over: raft_malloc'ed (restore frees it). */
static struct raft_buffer raft_copy(const uint8_t *p, size_t n)
{
    struct raft_buffer b = {.base = raft_malloc(n ? n : 1), .len = n};
    FUZZ_CHECK(b.base != NULL);
    if (n)
        memcpy(b.base, p, n);
    return b;
}

static json_t *snapshot_json(us_fsm *f, struct raft_buffer *copy)
{
    struct raft_buffer *bufs = NULL;
    unsigned n = 0;
    FUZZ_CHECK(f->raft.snapshot(&f->raft, &bufs, &n) == 0);
    FUZZ_CHECK(n == 1 && bufs[0].len > 0);
    json_error_t jerr;
    json_t *j = json_loadb(bufs[0].base, strnlen(bufs[0].base, bufs[0].len), 0, &jerr);
    FUZZ_CHECK(j != NULL);
    if (copy)
        *copy = raft_copy(bufs[0].base, bufs[0].len);
    FUZZ_CHECK(f->raft.snapshot_finalize(&f->raft, &bufs, &n) == 0);
    return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static us_fsm f, g;
    fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    us_fsm_init(&f, on_change, NULL);
    if (flags & 2) /* a small ring, so that inputs wrap it */
        FUZZ_CHECK(us_state_set_events_max(&f.state, US_EVENTS_MIN) == 0);
    changes = 0;
    bool restore = flags & 1;
    for (int k = 0; in.n > 0 && k < MAX_COMMANDS; k++) {
        const uint8_t *nul = memchr(in.p, '\0', in.n);
        size_t n = nul ? (size_t)(nul - in.p) : in.n;
        struct raft_buffer b = raft_copy(in.p, n);
        in.p += n + (nul != NULL);
        in.n -= n + (nul != NULL);
        if (restore && k == 0) {
            uint64_t before = f.state.version;
            int rc = f.raft.restore(&f.raft, &b); /* frees b */
            FUZZ_CHECK(rc == 0 || rc == RAFT_MALFORMED);
            if (rc != 0) /* a refused snapshot leaves the state as it was (here: fresh) */
                FUZZ_CHECK(f.state.version == before);
            continue;
        }
        void *result = NULL;
        int before = changes;
        FUZZ_CHECK(f.raft.apply(&f.raft, &b, &result) == 0);
        intptr_t r = (intptr_t)result;
        FUZZ_CHECK(r == US_APPLY_OK || r == US_APPLY_NOOP || r == US_APPLY_BAD);
        FUZZ_CHECK(changes == before + (r == US_APPLY_OK));
        raft_free(b.base);
    }

    /* What readers of the state do with it. */
    const us_state *s = &f.state;
    FUZZ_CHECK(s->n_nodes >= 0 && s->n_nodes <= US_MAX_NODES);
    FUZZ_CHECK(s->services.n >= 0 && s->services.n <= US_MAX_SERVICES);
    FUZZ_CHECK(s->n_retired >= 0 && s->n_retired <= US_RETIRED_MAX);
    for (uint64_t q = us_state_first_event(s); q && q <= s->event_seq; q++) {
        const us_event *e = us_state_event(s, q);
        FUZZ_CHECK(e != NULL);
        json_decref(us_event_to_json(e));
    }
    for (int i = 0; i < s->services.n; i++) {
        FUZZ_CHECK(us_state_find_service(s, s->services.svc[i].name) == i);
        FUZZ_CHECK(strcmp(s->asg[i].service, s->services.svc[i].name) == 0);
        us_assignment_role(&s->asg[i], s->asg[i].active);
        json_decref(us_assignment_to_json(&s->asg[i]));
    }
    for (int i = 0; i < s->n_nodes; i++) {
        FUZZ_CHECK(us_state_find_node(s, s->nodes[i].name) == i);
        us_state_holds_active(s, s->nodes[i].name);
    }

    /* Snapshot round trip. */
    struct raft_buffer snap;
    json_t *j1 = snapshot_json(&f, &snap);
    us_fsm_init(&g, NULL, NULL);
    FUZZ_CHECK(g.raft.restore(&g.raft, &snap) == 0); /* our own snapshot always restores */
    json_t *j2 = snapshot_json(&g, NULL);
    if (!json_equal(j1, j2)) {
        char *a = json_dumps(j1, JSON_SORT_KEYS), *b = json_dumps(j2, JSON_SORT_KEYS);
        fprintf(stderr, "snapshot round trip changed the state:\n%s\n%s\n", a, b);
        abort();
    }
    json_decref(j1);
    json_decref(j2);
    us_fsm_close(&f);
    us_fsm_close(&g);
    return 0;
}
