/* fuzz_cli.c — the CLI's handling of the agent's replies (HTTP itself is libcurl's): what the
 * commands do with the status and body that come back: the status rendering (us_render_status
 * with its tables, notes, instances and failures; us_http_learn_endpoints), event listing (the
 * page handling of us_events_page and us_render_event), redirects (leader_api) and error
 * explanations (us_http_fail_reply).
 *
 * The production functions, linked as they are (cli/http.h, cli/render.h, cli/commands.h).
 * Output goes to /dev/null.
 *
 * Input: one flag byte (bit 0 colour, bit 1 --json, bits 2-3 terminal width), two bytes of HTTP
 * status (100..599), then the body as libcurl hands it over. */
#include "fuzz.h"

#include "cli/commands.h"
#include "cli/http.h"
#include "cli/render.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!freopen("/dev/null", "w", stdout))
        abort();
    setenv("TZ", "UTC", 1);
    return 0;
}

/* What the events command does with one page: take it, then print what it took. */
static void events_page(const us_http *h, const us_render *o, const us_reply *rep)
{
    json_t *all = json_array();
    uint64_t after = 0, first = 0;
    bool more = false;
    if (us_events_page(h, rep, &after, all, &more, &first) == 0) {
        FUZZ_CHECK(rep->status == 200);
        uint64_t last = (uint64_t)json_integer_value(json_object_get(rep->json, "last"));
        FUZZ_CHECK(more || after >= last);
        us_render_event_header(o);
        size_t i;
        json_t *e;
        json_array_foreach(all, i, e) us_render_event(o, e);
    }
    json_decref(all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    static const int widths[] = {0, 10, 40, 120};
    us_render o = {.json = flags & 2, .color = flags & 1, .width = widths[(flags >> 2) & 3]};
    static us_http h;
    memset(&h, 0, sizeof h);
    strcpy(h.api, "127.0.0.1:7201");
    strcpy(h.origin, h.api);

    FILE *saved = stderr;
    stderr = fuzz_devnull();
    us_reply rep = {0};
    rep.status = 100 + (int)(((unsigned)fuzz_u8(&in) << 8 | fuzz_u8(&in)) % 500);
    rep.body = fuzz_text(in.p, in.n); /* NUL-terminated, as the CLI keeps it */
    rep.len = in.n;
    rep.json = json_loadb(rep.body, rep.len, 0, NULL);
    /* What us_http_call looks at: a redirect, "no leader". */
    const char *leader = us_render_str(rep.json, "leader_api");
    if (leader)
        us_http_hostport_valid(leader);
    us_render_str(rep.json, "error");
    if (rep.status < 200 || rep.status > 299)
        us_http_fail_reply(&h, &rep);
    us_render_body(rep.body, rep.len);
    if (json_is_object(rep.json)) {
        if (us_render_status(&o, rep.json) != 0)
            us_render_unexpected(h.api, "status without cluster, nodes and services");
        us_http_learn_endpoints(&h, rep.json);
        FUZZ_CHECK(h.n_endpoints <= US_HTTP_MAX_ENDPOINTS);
        events_page(&h, &o, &rep);
    }
    us_reply_free(&rep);
    stderr = saved;
    return 0;
}
