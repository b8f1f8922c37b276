/* fuzz_cli.c — the CLI's handling of the agent's replies (HTTP itself is libcurl's): what the
 * commands do with the status and body that come back: the status rendering (print_status with its
 * tables, notes, instances and failures; learn_endpoints), event listing (the page handling of
 * fetch_events and print_event), redirects (leader_api) and error explanations (fail_reply).
 *
 * These are static functions of src/cli/cli.c, reachable only behind a socket there: this harness
 * compiles src/cli/cli.c into itself (the Makefile leaves build/fuzz/cli.o out of its link), so
 * cli.c needs no entry point of its own. Output goes to /dev/null.
 *
 * Input: one flag byte (bit 0 colour, bit 1 --json, bits 2-3 terminal width), two bytes of HTTP
 * status (100..599), then the body as libcurl hands it over. */
#include "fuzz.h"

#include "cli/cli.c"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!freopen("/dev/null", "w", stdout))
        abort();
    setenv("TZ", "UTC", 1);
    return 0;
}

/* fetch_events after its request: the page's events, `more`, `first`, `last`. */
static void events_page(cli *c, reply *rep)
{
    json_t *events = json_object_get(rep->json, "events");
    if (rep->status != 200 || !json_is_array(events)) {
        if (rep->status != 200)
            fail_reply(c, rep);
        else
            unexpected(c, "events reply without an events list");
        return;
    }
    json_t *all = json_array();
    uint64_t after = 0;
    bool more = json_is_true(json_object_get(rep->json, "more"));
    uint64_t first = (uint64_t)json_integer_value(json_object_get(rep->json, "first"));
    uint64_t last = (uint64_t)json_integer_value(json_object_get(rep->json, "last"));
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        json_array_append(all, e);
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(e, "seq"));
        if (seq > after)
            after = seq;
    }
    if (!more && last > after)
        after = last;
    (void)first;
    print_event_header(c);
    json_array_foreach(all, i, e) print_event(c, e);
    json_decref(all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    static const int widths[] = {0, 10, 40, 120};
    cli c = {.json = flags & 2, .color = flags & 1, .width = widths[(flags >> 2) & 3]};
    strcpy(c.api, "127.0.0.1:7201");
    strcpy(c.origin, c.api);

    FILE *saved = stderr;
    stderr = fuzz_devnull();
    reply rep = {0};
    rep.status = 100 + (int)(((unsigned)fuzz_u8(&in) << 8 | fuzz_u8(&in)) % 500);
    rep.body = fuzz_text(in.p, in.n); /* NUL-terminated, as the CLI keeps it */
    rep.len = in.n;
    rep.json = json_loadb(rep.body, rep.len, 0, NULL);
    /* What call() looks at: a redirect, "no leader". */
    const char *leader = jstr(rep.json, "leader_api");
    if (leader)
        hostport_valid(leader);
    jstr(rep.json, "error");
    if (rep.status < 200 || rep.status > 299)
        fail_reply(&c, &rep);
    print_body(&rep);
    if (json_is_object(rep.json)) {
        print_status(&c, rep.json);
        learn_endpoints(&c, rep.json);
        FUZZ_CHECK(c.n_endpoints <= MAX_ENDPOINTS);
        events_page(&c, &rep);
    }
    reply_free(&rep);
    stderr = saved;
    return 0;
}
