/* test_reports.c — the one report lookup (reports.h): this node's report is built from its
 * instance the way its pings carry it, a peer reads back exactly that report from the ping, and
 * a lookup finds a node's report by service. So a node's own answer (GET /v1/status, metrics)
 * and a peer's answer about it agree; in particular `restarts` is the running total of standby
 * restarts, never the backoff counter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/reports.h"
#include "lib/jscan.h"
#include "core/msg.h"

static us_report_source source(const char *service)
{
    return (us_report_source){
        .service = service,
        .obs = {.state = US_INST_STANDBY,
                .epoch = 7,
                .exit_status = 0,
                .health = US_HEALTH_HEALTHY,
                .cause = "",
                .refused = false},
        .pid = 4242,
        .has_checks = true,
        .check_ms = 12,
        .probes = 40,
        .probes_failed = 3,
        .restarts_total = 5,
        .restart_cause = "standby process exited (status 137)",
        .px_epoch = 7,
        .px_open = 2,
    };
}

static void assert_report_equal(const us_report *x, const us_report *y)
{
    assert_string_equal(x->service, y->service);
    assert_int_equal(x->obs.state, y->obs.state);
    assert_int_equal(x->obs.epoch, y->obs.epoch);
    assert_int_equal(x->obs.exit_status, y->obs.exit_status);
    assert_int_equal(x->obs.health, y->obs.health);
    assert_string_equal(x->obs.cause, y->obs.cause);
    assert_int_equal(x->obs.refused, y->obs.refused);
    assert_int_equal(x->obs.followed, y->obs.followed);
    assert_int_equal(x->obs.position, y->obs.position);
    assert_int_equal(x->obs.sync_applied, y->obs.sync_applied);
    assert_int_equal(x->obs.position_gen, y->obs.position_gen);
    assert_int_equal(x->pid, y->pid);
    assert_int_equal(x->px_epoch, y->px_epoch);
    assert_int_equal(x->px_open, y->px_open);
    assert_int_equal(x->check_ms, y->check_ms);
    assert_int_equal(x->probes, y->probes);
    assert_int_equal(x->probes_failed, y->probes_failed);
    assert_int_equal(x->restarts, y->restarts);
    assert_string_equal(x->restart_cause, y->restart_cause);
}

static void test_make(void **state)
{
    (void)state;
    us_report_source src = source("web");
    us_report r;
    memset(&r, 0x5a, sizeof r);
    us_report_make(&src, &r);
    assert_string_equal(r.service, "web");
    assert_int_equal(r.obs.state, US_INST_STANDBY);
    assert_int_equal(r.obs.epoch, 7);
    assert_int_equal(r.pid, 4242);
    assert_int_equal(r.check_ms, 12);
    assert_int_equal(r.probes, 40);
    assert_int_equal(r.probes_failed, 3);
    /* The running total: what peers see too (the backoff counter is not a source at all). */
    assert_int_equal(r.restarts, 5);
    assert_string_equal(r.restart_cause, "standby process exited (status 137)");
    assert_int_equal(r.px_epoch, 7);
    assert_int_equal(r.px_open, 2);

    /* No checker: no latency (-1) and no probes, whatever the numbers say. */
    src.has_checks = false;
    src.restart_cause = NULL;
    us_report_make(&src, &r);
    assert_int_equal(r.check_ms, -1);
    assert_int_equal(r.probes, 0);
    assert_int_equal(r.probes_failed, 0);
    assert_string_equal(r.restart_cause, "");
}

static void test_find(void **state)
{
    (void)state;
    us_report reps[3];
    const char *names[] = {"web", "db", "mail"};
    for (int i = 0; i < 3; i++) {
        us_report_source src = source(names[i]);
        src.restarts_total = i;
        us_report_make(&src, &reps[i]);
    }
    assert_ptr_equal(us_report_find(reps, 3, "web"), &reps[0]);
    assert_ptr_equal(us_report_find(reps, 3, "mail"), &reps[2]);
    assert_int_equal(us_report_find(reps, 3, "db")->restarts, 1);
    assert_null(us_report_find(reps, 3, "dns"));
    assert_null(us_report_find(reps, 2, "mail")); /* only the first n count */
    assert_null(us_report_find(NULL, 0, "web"));
}

/* A node that holds no role of a service and never ran it leaves it out of its pings; anything it
 * could say about it (a process, a restart, a failure, a probe, a proxy connection) keeps it in. */
static void test_says_nothing(void **state)
{
    (void)state;
    us_report_source src = {
        .service = "web", .obs = {.state = US_INST_NONE, .epoch = 9}, .px_epoch = 9};
    us_report r;
    us_report_make(&src, &r);
    assert_true(us_report_says_nothing(&r)); /* its epochs do not count */
    us_report_source keep[] = {src, src, src, src, src, src, src, src, src, src, src};
    keep[0].obs.state = US_INST_STANDBY;
    keep[1].obs.state = US_INST_DEMOTED;
    keep[2].pid = 17;
    keep[3].restarts_total = 1;
    keep[4].restart_cause = "standby process exited (status 1)";
    keep[5].has_checks = true, keep[5].probes = 3;
    keep[6].px_open = 1;
    keep[7].obs.health = US_HEALTH_UNHEALTHY;
    keep[8].obs.exit_status = 1;
    strcpy(keep[9].obs.cause, "check failed");
    keep[10].obs.followed = 3;
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        us_report_make(&keep[i], &r);
        assert_false(us_report_says_nothing(&r));
    }
}

static us_msg g_msg; /* large */

/* What this node reports about its instances is what a peer reads from its ping: the peer's
 * lookup and the own lookup give the same report. */
static void test_ping_round_trip(void **state)
{
    (void)state;
    us_report own[2];
    us_report_source web = source("web");
    us_report_source db = source("db");
    db.obs = (us_inst_obs){.state = US_INST_FAILED,
                           .epoch = UINT64_MAX,
                           .exit_status = -1,
                           .health = US_HEALTH_UNHEALTHY,
                           .cause = "check tcp://127.0.0.1:1 failed 3/3: refused",
                           .refused = true};
    db.has_checks = false;
    db.restarts_total = 0;
    db.restart_cause = "";
    db.pid = 0;
    us_report_make(&web, &own[0]);
    us_report_make(&db, &own[1]);

    /* Both forms: "rep" names every field, "rp" (brief) leaves the defaults out. */
    for (int brief = 0; brief <= 1; brief++) {
        char rep[4096], text[8192];
        size_t rep_len;
        assert_int_equal(us_msg_reports_text(rep, sizeof rep, own, 2, brief, &rep_len), 2);
        us_msg_ping fields = {.round = 1, .term = 2, .lease = true, .reads_brief = brief};
        size_t len = us_msg_ping_text(text, sizeof text, &fields, rep, rep_len, brief);
        assert_true(len > 0 && len == strlen(text));
        const char *why = NULL;
        us_msg_result rc = us_msg_decode(text, len, &g_msg, &why);
        assert_int_equal(rc, US_MSG_OK);
        const us_msg_ping *p = &g_msg.u.ping;
        assert_true(p->has_rep);
        assert_int_equal(p->reads_brief, brief);
        assert_int_equal(p->n_reports, 2);
        for (int i = 0; i < 2; i++) {
            const us_report *theirs = us_report_find(p->reports, p->n_reports, own[i].service);
            assert_non_null(theirs);
            assert_report_equal(theirs, &own[i]);
        }
    }
}

/* The members of the one report in a reports object, counted with the scanner. */
static int members(const char *rep_text)
{
    static us_jtok tok[256];
    us_js js;
    assert_int_equal(us_js_parse(&js, rep_text, strlen(rep_text), tok, 256), 0);
    assert_int_equal(js.tok[0].n, 1);
    return (int)js.tok[2].n;
}

/* The brief form of a quiet standby's report is its state and epoch, nothing else; a report with
 * every field away from its default keeps them all and reads back the same. */
static void test_brief_form(void **state)
{
    (void)state;
    us_report r = {.service = "web",
                   .obs = {.state = US_INST_STANDBY, .epoch = 7, .position = -1},
                   .check_ms = -1};
    char rep[2048];
    size_t len;
    assert_int_equal(us_msg_reports_text(rep, sizeof rep, &r, 1, true, &len), 1);
    assert_string_equal(rep, "{\"web\":{\"s\":1,\"e\":\"7\"}}");
    assert_int_equal(us_msg_reports_text(rep, sizeof rep, &r, 1, false, &len), 1);
    assert_int_equal(members(rep), 18);

    us_report all = {.service = "db",
                     .obs = {.state = US_INST_FAILED,
                             .epoch = UINT64_MAX,
                             .exit_status = -3,
                             .health = US_HEALTH_UNHEALTHY,
                             .cause = "check \"failed\"\n\x01 caf\xc3\xa9",
                             .refused = true,
                             .followed = 6,
                             .position = 0,
                             .sync_applied = 3,
                             .position_gen = 8},
                     .pid = 9,
                     .px_epoch = 5,
                     .px_open = 2,
                     .check_ms = 0,
                     .probes = 11,
                     .probes_failed = 4,
                     .restarts = 1,
                     .restart_cause = "standby process exited"};
    assert_int_equal(us_msg_reports_text(rep, sizeof rep, &all, 1, true, &len), 1);
    assert_int_equal(members(rep), 18);
    char text[4096];
    us_msg_ping fields = {.round = 1, .term = 2, .lease = true};
    assert_true(us_msg_ping_text(text, sizeof text, &fields, rep, len, true) > 0);
    assert_int_equal(us_msg_decode(text, strlen(text), &g_msg, NULL), US_MSG_OK);
    assert_int_equal(g_msg.u.ping.n_reports, 1);
    assert_report_equal(&g_msg.u.ping.reports[0], &all);

    /* A cause that is not UTF-8 (a hook's output) still makes a ping that decodes: the byte
     * becomes U+FFFD. */
    us_strlcpy(all.obs.cause, "bad \xff byte", sizeof all.obs.cause);
    assert_int_equal(us_msg_reports_text(rep, sizeof rep, &all, 1, false, &len), 1);
    assert_true(us_msg_ping_text(text, sizeof text, &fields, rep, len, false) > 0);
    assert_int_equal(us_msg_decode(text, strlen(text), &g_msg, NULL), US_MSG_OK);
    assert_string_equal(g_msg.u.ping.reports[0].obs.cause, "bad \xef\xbf\xbd byte");
}

/* A node with more reports than a datagram holds: as many as fit go, whole, in order. */
static void test_reports_that_fit(void **state)
{
    (void)state;
    static us_report many[50];
    for (int i = 0; i < 50; i++) {
        snprintf(many[i].service, sizeof many[i].service, "svc-%02d", i);
        many[i].obs.state = US_INST_ACTIVE;
        many[i].obs.epoch = (uint64_t)i + 1;
        many[i].check_ms = -1;
    }
    char rep[400];
    size_t len;
    int fit = us_msg_reports_text(rep, sizeof rep, many, 50, true, &len);
    assert_true(fit > 5 && fit < 50);
    assert_int_equal(len, strlen(rep));
    assert_true(len < sizeof rep);
    char text[1024];
    us_msg_ping fields = {.round = 3, .term = 1, .lease = true};
    assert_true(us_msg_ping_text(text, sizeof text, &fields, rep, len, true) > 0);
    assert_int_equal(us_msg_decode(text, strlen(text), &g_msg, NULL), US_MSG_OK);
    assert_int_equal(g_msg.u.ping.n_reports, fit);
    for (int i = 0; i < fit; i++)
        assert_report_equal(&g_msg.u.ping.reports[i], &many[i]);
    /* not even "{}" */
    assert_int_equal(us_msg_reports_text(rep, 2, many, 50, true, &len), 0);
    assert_int_equal(len, 0);
    /* a ping that does not fit is not written */
    assert_int_equal(us_msg_ping_text(text, 20, &fields, NULL, 0, true), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_make),         cmocka_unit_test(test_find),
        cmocka_unit_test(test_says_nothing), cmocka_unit_test(test_ping_round_trip),
        cmocka_unit_test(test_brief_form),   cmocka_unit_test(test_reports_that_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
