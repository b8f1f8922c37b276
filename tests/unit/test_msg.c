/* test_msg.c — datagram payloads (msg.h): what decodes, and that every field of the wrong type,
 * range or size is refused with the field named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/msg.h"

static us_msg g_msg; /* large */

static us_msg_result decode(const char *text, const char **why)
{
    memset(&g_msg, 0x5A, sizeof g_msg);
    return us_msg_decode(text, strlen(text), &g_msg, why);
}

#define REPORT                                                                                     \
    "{\"state\":2,\"epoch\":\"18446744073709551615\",\"exit\":-1,\"pid\":42,\"px_epoch\":\"3\","   \
    "\"px_open\":1,\"health\":1,\"cause\":\"ok\",\"check_ms\":-1,\"probes\":7,"                    \
    "\"probes_failed\":2,\"restarts\":1,\"restart_cause\":\"exited\",\"refused\":false,"           \
    "\"followed\":\"17\"}"

static void test_ping(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(decode("{\"t\":\"ping\",\"seq\":\"9\",\"term\":\"3\",\"lease\":true,"
                            "\"api\":\"127.0.0.1:7201\",\"rep\":{\"web\":" REPORT "},"
                            "\"gr\":{\"n2\":{\"age\":-1,\"stale\":false,\"v\":\"12\"}},"
                            "\"ci\":\"41\",\"future\":[1,2,3]}",
                            &why),
                     US_MSG_OK);
    const us_msg_ping *p = &g_msg.u.ping;
    assert_int_equal(g_msg.type, US_MSG_PING);
    assert_int_equal(p->round, 9);
    assert_int_equal(p->term, 3);
    assert_true(p->lease);
    assert_true(p->has_api);
    assert_string_equal(p->api, "127.0.0.1:7201");
    assert_int_equal(p->n_reports, 1);
    assert_string_equal(p->reports[0].service, "web");
    assert_int_equal(p->reports[0].obs.state, US_INST_ACTIVE);
    assert_true(p->reports[0].obs.epoch == UINT64_MAX);
    assert_int_equal(p->reports[0].obs.exit_status, -1);
    assert_int_equal(p->reports[0].pid, 42);
    assert_int_equal(p->reports[0].px_epoch, 3);
    assert_int_equal(p->reports[0].obs.health, US_HEALTH_HEALTHY);
    assert_string_equal(p->reports[0].obs.cause, "ok");
    assert_int_equal(p->reports[0].check_ms, -1);
    assert_int_equal(p->reports[0].probes_failed, 2);
    assert_string_equal(p->reports[0].restart_cause, "exited");
    assert_false(p->reports[0].obs.refused);
    assert_int_equal(p->reports[0].obs.followed, 17);
    assert_int_equal(p->n_leases, 1);
    assert_string_equal(p->leases[0].node, "n2");
    assert_int_equal(p->leases[0].age, -1);
    assert_int_equal(p->leases[0].v, 12);
    assert_true(p->has_commit);
    assert_int_equal(p->commit, 41);
    assert_true(p->has_rep);
    assert_int_equal(p->adopt, 0);
    /* A full report from an agent older than "followed" (the last field) lacks it: 0. */
    char old[1024];
    snprintf(old, sizeof old,
             "{\"t\":\"ping\",\"seq\":\"9\",\"term\":\"3\",\"lease\":true,\"rep\":{\"web\":%s}}",
             REPORT);
    char *fw = strstr(old, ",\"followed\"");
    assert_non_null(fw);
    memmove(fw, strchr(fw, '}'), strlen(strchr(fw, '}')) + 1);
    assert_int_equal(decode(old, &why), US_MSG_OK);
    assert_int_equal(g_msg.u.ping.reports[0].obs.followed, 0);
    assert_int_equal(g_msg.u.ping.reports[0].obs.state, US_INST_ACTIVE);
    /* Minimal (what a guardian renewing the lease during a planned restart sends): no api, no
     * reports (the sender's last ones stand), no lease reports. */
    assert_int_equal(decode("{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"0\",\"lease\":false}", NULL),
                     US_MSG_OK);
    assert_false(g_msg.u.ping.has_api);
    assert_false(g_msg.u.ping.has_rep);
    assert_int_equal(g_msg.u.ping.n_reports, 0);
    assert_false(g_msg.u.ping.has_commit); /* only the leader sends "ci" */
    assert_false(g_msg.u.ping.has_av);     /* nor does the guardian say what it applied */
    /* An empty "rep" is a report of no instances, not an absent one. */
    assert_int_equal(
        decode("{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"0\",\"lease\":true,\"rep\":{}}", NULL),
        US_MSG_OK);
    assert_true(g_msg.u.ping.has_rep);
    /* After a planned restart: the incarnation whose instances the sender adopted. */
    assert_int_equal(decode("{\"t\":\"ping\",\"seq\":\"2\",\"term\":\"0\",\"lease\":true,"
                            "\"adopt\":\"18446744073709551615\"}",
                            NULL),
                     US_MSG_OK);
    assert_true(g_msg.u.ping.adopt == UINT64_MAX);
    assert_false(g_msg.u.ping.vote);
    assert_int_equal(g_msg.u.ping.interval_ms, 0); /* not said: a heartbeat (fanout.h) */
    /* Fanout: the sender votes, and pings this receiver every second. */
    assert_int_equal(decode("{\"t\":\"ping\",\"seq\":\"3\",\"term\":\"0\",\"lease\":true,"
                            "\"vote\":true,\"iv\":1000}",
                            NULL),
                     US_MSG_OK);
    assert_true(g_msg.u.ping.vote);
    assert_int_equal(g_msg.u.ping.interval_ms, 1000);
}

static void test_ping_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"{\"t\":\"ping\",\"seq\":1,\"term\":\"3\",\"lease\":true}", "ping: seq"},
        {"{\"t\":\"ping\",\"seq\":\"0\",\"term\":\"3\",\"lease\":true}", "ping: seq"},
        {"{\"t\":\"ping\",\"seq\":\"-1\",\"term\":\"3\",\"lease\":true}", "ping: seq"},
        {"{\"t\":\"ping\",\"seq\":\"18446744073709551616\",\"term\":\"3\",\"lease\":true}",
         "ping: seq"},
        {"{\"t\":\"ping\",\"seq\":\"1x\",\"term\":\"3\",\"lease\":true}", "ping: seq"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":1}", "ping: lease"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"api\":\"10.0.0.1\"}",
         "ping: api"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rep\":[]}", "ping: rep"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"sh\":\"a b\"}", "ping: sh"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"sh\":\"\"}", "ping: sh"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"sh\":7}", "ping: sh"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"adopt\":7}", "ping: adopt"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"av\":7}", "ping: av"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"av\":\"-1\"}", "ping: av"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"vote\":1}", "ping: vote"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"iv\":-1}", "ping: iv"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"iv\":60001}", "ping: iv"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"iv\":\"100\"}", "ping: iv"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"adopt\":\"x\"}",
         "ping: adopt"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rep\":{\"Web\":" REPORT
         "}}",
         "ping: rep (a report)"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rep\":{\"web\":{}}}",
         "ping: rep (a report)"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rep\":{},\"rp\":{}}",
         "ping: rep and rp"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rp\":{\"web\":{\"s\":6}}}",
         "ping: rep (a report)"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rp\":{\"web\":{\"e\":7}}}",
         "ping: rep (a report)"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rp\":{\"web\":{\"cm\":-2}}"
         "}",
         "ping: rep (a report)"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rp\":{\"web\":{\"rf\":0}}}",
         "ping: rep (a report)"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rp\":{\"web\":{\"c\":1}}}",
         "ping: rep (a report)"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rb\":1}", "ping: rb"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"gr\":{\"n2\":{\"age\":-2,"
         "\"stale\":false,\"v\":\"1\"}}}",
         "ping: gr (a lease report)"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"gr\":{\"n2\":{\"age\":5,"
         "\"stale\":\"no\",\"v\":\"1\"}}}",
         "ping: gr (a lease report)"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"ci\":7}", "ping: ci"},
        {"{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"ci\":\"-7\"}", "ping: ci"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = NULL;
        us_msg_result r = decode(cases[i].text, &why);
        if (r != US_MSG_MALFORMED || !why || strcmp(why, cases[i].why) != 0)
            fail_msg("case %zu: %d %s (expected MALFORMED %s)", i, r, why ? why : "-",
                     cases[i].why);
    }
    /* Out of range fields of a report. */
    static const char *const bad_fields[] = {
        "\"state\":6",     "\"state\":-1",    "\"health\":3",     "\"pid\":-1",
        "\"px_open\":-1",  "\"check_ms\":-2", "\"restarts\":-1",  "\"refused\":0",
        "\"cause\":7",     "\"epoch\":5",     "\"probes\":\"7\"", "\"exit\":2147483648",
        "\"followed\":-1",
    };
    for (size_t i = 0; i < sizeof bad_fields / sizeof bad_fields[0]; i++) {
        char text[1024], rep[600];
        snprintf(rep, sizeof rep, "%s", REPORT);
        /* Replace the field of the same key. */
        const char *colon = strchr(bad_fields[i], ':');
        size_t klen = (size_t)(colon - bad_fields[i]);
        char *at = strstr(rep, "\"");
        for (; at; at = strstr(at + 1, "\""))
            if (strncmp(at, bad_fields[i], klen + 1) == 0)
                break;
        assert_non_null(at);
        char *end = at + klen + 1;
        int depth = 0;
        while (*end && (depth > 0 || (*end != ',' && *end != '}'))) {
            if (*end == '"')
                depth = !depth;
            end++;
        }
        char fixed[600];
        snprintf(fixed, sizeof fixed, "%.*s%s%s", (int)(at - rep), rep, bad_fields[i], end);
        snprintf(
            text, sizeof text,
            "{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rep\":{\"web\":%s}}",
            fixed);
        if (decode(text, NULL) != US_MSG_MALFORMED)
            fail_msg("report field %s accepted: %s", bad_fields[i], text);
    }
}

/* Reports, leases or fenced services beyond the bounds (US_MSG_REPORTS_MAX, US_MAX_NODES,
 * US_MAX_SERVICES): refused with a message naming the bound, not truncated; exactly the bound is
 * fine. */
static int ping_text(char *text, size_t size, int reports, int leases)
{
    int n = snprintf(text, size,
                     "{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\","
                     "\"lease\":true,\"rep\":{");
    for (int i = 0; i < reports; i++)
        n += snprintf(text + n, size - (size_t)n, "%s\"s%d\":" REPORT, i ? "," : "", i);
    n += snprintf(text + n, size - (size_t)n, "},\"gr\":{");
    for (int i = 0; i < leases; i++)
        n += snprintf(text + n, size - (size_t)n,
                      "%s\"n%d\":{\"age\":5,\"stale\":false,\"v\":\"9\"}", i ? "," : "", i);
    return n + snprintf(text + n, size - (size_t)n, "}}");
}

static void test_sizes(void **state)
{
    (void)state;
    static char text[262144];
    const char *why;
    ping_text(text, sizeof text, US_MSG_REPORTS_MAX, US_MAX_NODES);
    assert_int_equal(decode(text, &why), US_MSG_OK);
    assert_int_equal(g_msg.u.ping.n_reports, US_MSG_REPORTS_MAX);
    assert_int_equal(g_msg.u.ping.n_leases, US_MAX_NODES);
    assert_string_equal(g_msg.u.ping.reports[US_MSG_REPORTS_MAX - 1].service, "s399");
    ping_text(text, sizeof text, US_MSG_REPORTS_MAX + 1, 1);
    assert_int_equal(decode(text, &why), US_MSG_MALFORMED);
    assert_string_equal(why, "ping: rep (more than 400 reports)");
    ping_text(text, sizeof text, 1, US_MAX_NODES + 1);
    assert_int_equal(decode(text, &why), US_MSG_MALFORMED);
    assert_string_equal(why, "ping: gr (more than 64 nodes)");
    for (int extra = 0; extra <= 1; extra++) {
        int n = snprintf(text, sizeof text, "{\"t\":\"fenced\",\"fenced\":[");
        for (int i = 0; i < US_MAX_SERVICES + extra; i++)
            n += snprintf(text + n, sizeof text - (size_t)n, "%s{\"service\":\"s%d\",\"epoch\":1}",
                          i ? "," : "", i);
        snprintf(text + n, sizeof text - (size_t)n, "]}");
        assert_int_equal(decode(text, &why), extra ? US_MSG_MALFORMED : US_MSG_OK);
        if (extra)
            assert_string_equal(why, "fenced: fenced (more than 1000 services)");
        else
            assert_int_equal(g_msg.u.fenced.n, US_MAX_SERVICES);
    }
    /* A cause longer than the field holds. */
    char longer[2048];
    memset(longer, 'x', US_REASON_MAX + 10);
    longer[US_REASON_MAX + 10] = '\0';
    snprintf(text, sizeof text,
             "{\"t\":\"ping\",\"seq\":\"1\",\"term\":\"3\",\"lease\":true,\"rep\":{\"web\":"
             "{\"state\":2,\"epoch\":\"1\",\"exit\":0,\"pid\":1,\"px_epoch\":\"1\",\"px_open\":0,"
             "\"health\":0,\"cause\":\"%s\",\"check_ms\":-1,\"probes\":0,\"probes_failed\":0,"
             "\"restarts\":0,\"restart_cause\":\"\",\"refused\":false}}}",
             longer);
    assert_int_equal(decode(text, &why), US_MSG_MALFORMED);
    /* An embedded NUL in a string would shorten it unseen. */
    const char nul[] = "{\"t\":\"join\",\"name\":\"n4\\u0000x\",\"address\":\"127.0.0.1:1\"}";
    assert_int_equal(decode(nul, &why), US_MSG_MALFORMED);
}

/* us_msg_pong_text: what the decoder reads back, for every flag and both forms of rv. */
static void test_pong_text(void **state)
{
    (void)state;
    const us_msg_pong cases[] = {
        {.round = 1, .v = 0, .rv = 0},
        {.round = 4, .v = 10, .rv = 3, .ack = true},
        {.round = UINT64_MAX,
         .v = UINT64_MAX,
         .rv = UINT64_MAX - 1,
         .grant = true,
         .removed = true},
        {.round = 7, .v = 9, .rv = 9, .ack = true, .grant = true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[US_MSG_PONG_MAX];
        size_t n = us_msg_pong_text(text, sizeof text, &cases[i]);
        assert_true(n > 0 && n == strlen(text));
        const char *why = NULL;
        assert_int_equal(decode(text, &why), US_MSG_OK);
        assert_int_equal(g_msg.type, US_MSG_PONG);
        const us_msg_pong *p = &g_msg.u.pong;
        assert_true(p->round == cases[i].round && p->v == cases[i].v && p->rv == cases[i].rv);
        assert_true(p->ack == cases[i].ack && p->grant == cases[i].grant &&
                    p->removed == cases[i].removed);
        /* Too small a buffer: nothing, never a cut pong. */
        assert_int_equal(us_msg_pong_text(text, n, &cases[i]), 0);
    }
}

/* A ping as us_msg_ping_text writes it reads back field for field, for every optional field
 * present and absent; the lease reports of a voter's ping to every other node fit. */
static void test_ping_text(void **state)
{
    (void)state;
    static us_msg_ping in; /* large */
    static char text[60000];
    for (int variant = 0; variant < 2; variant++) {
        memset(&in, 0, offsetof(us_msg_ping, reports));
        in.round = variant ? UINT64_MAX : 5;
        in.term = 17;
        in.lease = true;
        in.vote = variant;
        in.reads_brief = variant;
        if (variant) {
            in.has_api = true;
            strcpy(in.api, "198.18.0.3:7201");
            strcpy(in.service_host, "db-3.example");
            in.has_commit = true;
            in.commit = UINT64_MAX - 3;
            in.adopt = 99;
            in.interval_ms = 1500;
            in.has_av = true;
            in.av = UINT64_MAX - 5;
            for (int i = 0; i < US_MAX_NODES; i++) {
                us_msg_lease *l = &in.leases[in.n_leases++];
                snprintf(l->node, sizeof l->node, "node-%02d-with-a-long-name-for-the-budget", i);
                l->age = i == 3 ? -1 : 10 * i;
                l->stale = i % 7 == 0;
                l->v = UINT64_MAX - (uint64_t)i;
            }
        }
        size_t len = us_msg_ping_text(text, sizeof text, &in, variant ? "{}" : NULL, 2, true);
        assert_true(len > 0 && len == strlen(text));
        const char *why = NULL;
        assert_int_equal(decode(text, &why), US_MSG_OK);
        const us_msg_ping *p = &g_msg.u.ping;
        assert_true(p->round == in.round && p->term == in.term && p->lease == in.lease);
        assert_true(p->vote == in.vote && p->reads_brief == in.reads_brief);
        assert_true(p->has_api == in.has_api && strcmp(p->api, in.api) == 0);
        assert_string_equal(p->service_host, in.service_host);
        assert_true(p->has_commit == in.has_commit && p->commit == in.commit);
        assert_true(p->adopt == in.adopt && p->interval_ms == in.interval_ms);
        assert_true(p->has_av == in.has_av && p->av == in.av);
        assert_true(p->has_rep == (variant == 1) && p->n_reports == 0);
        assert_int_equal(p->n_leases, in.n_leases);
        for (int i = 0; i < in.n_leases; i++) {
            assert_string_equal(p->leases[i].node, in.leases[i].node);
            assert_true(p->leases[i].age == in.leases[i].age);
            assert_true(p->leases[i].stale == in.leases[i].stale);
            assert_true(p->leases[i].v == in.leases[i].v);
        }
        /* Too small a buffer: nothing, never a cut ping. */
        assert_int_equal(us_msg_ping_text(text, len, &in, variant ? "{}" : NULL, 2, true), 0);
    }
}

static void test_other_types(void **state)
{
    (void)state;
    const char *why;
    assert_int_equal(decode("{\"t\":\"pong\",\"seq\":\"4\",\"v\":\"10\",\"grant\":true}", &why),
                     US_MSG_OK);
    assert_int_equal(g_msg.type, US_MSG_PONG);
    assert_int_equal(g_msg.u.pong.round, 4);
    assert_true(g_msg.u.pong.grant);
    assert_false(g_msg.u.pong.ack);
    assert_false(g_msg.u.pong.removed);
    assert_int_equal(
        decode("{\"t\":\"pong\",\"seq\":\"4\",\"v\":\"10\",\"removed\":\"yes\"}", &why),
        US_MSG_MALFORMED);
    /* "rv" (the voter's roles_v of the requester): absent = v; never past v, a u64 string. */
    assert_int_equal(decode("{\"t\":\"pong\",\"seq\":\"4\",\"v\":\"10\"}", &why), US_MSG_OK);
    assert_int_equal(g_msg.u.pong.v, 10);
    assert_int_equal(g_msg.u.pong.rv, 10);
    assert_int_equal(decode("{\"t\":\"pong\",\"seq\":\"4\",\"v\":\"10\",\"rv\":\"3\"}", &why),
                     US_MSG_OK);
    assert_int_equal(g_msg.u.pong.rv, 3);
    assert_int_equal(decode("{\"t\":\"pong\",\"seq\":\"4\",\"v\":\"10\",\"rv\":\"11\"}", &why),
                     US_MSG_MALFORMED);
    assert_string_equal(why, "pong: rv");
    assert_int_equal(decode("{\"t\":\"pong\",\"seq\":\"4\",\"v\":\"10\",\"rv\":3}", &why),
                     US_MSG_MALFORMED);
    assert_int_equal(decode("{\"t\":\"hello\"}", &why), US_MSG_OK);
    assert_int_equal(g_msg.type, US_MSG_HELLO);
    assert_int_equal(decode("{\"t\":\"leave\",\"from\":\"n1\"}", &why), US_MSG_OK);
    assert_int_equal(g_msg.type, US_MSG_LEAVE);
    assert_int_equal(
        decode("{\"t\":\"join\",\"name\":\"n4\",\"address\":\"127.0.0.1:7104\",\"fwd\":true}",
               &why),
        US_MSG_OK);
    assert_string_equal(g_msg.u.join.name, "n4");
    assert_string_equal(g_msg.u.join.address, "127.0.0.1:7104");
    assert_string_equal(g_msg.u.join.api, "");
    assert_true(g_msg.u.join.fwd);
    assert_int_equal(
        decode("{\"t\":\"join\",\"name\":\"N4\",\"address\":\"127.0.0.1:7104\"}", &why),
        US_MSG_MALFORMED);
    assert_string_equal(why, "join: name");
    assert_int_equal(decode("{\"t\":\"join\",\"name\":\"n4\",\"address\":\"x:1\"}", &why),
                     US_MSG_MALFORMED);
    assert_int_equal(decode("{\"t\":\"fenced\",\"fenced\":[{\"service\":\"web\",\"epoch\":3}],"
                            "\"agent\":\"dead\"}",
                            &why),
                     US_MSG_OK);
    assert_int_equal(g_msg.u.fenced.n, 1);
    assert_int_equal(g_msg.u.fenced.fenced[0].epoch, 3);
    assert_true(g_msg.u.fenced.agent_dead);
    assert_int_equal(
        decode("{\"t\":\"fenced\",\"fenced\":[{\"service\":\"web\",\"epoch\":-3}]}", &why),
        US_MSG_MALFORMED);
    /* Not a message at all; unknown and duplicate keys; a type from a newer version. */
    assert_int_equal(decode("[1]", &why), US_MSG_MALFORMED);
    assert_int_equal(decode("{\"t\":5}", &why), US_MSG_MALFORMED);
    assert_int_equal(decode("{\"t\":\"hello\",\"t\":\"hello\"}", &why), US_MSG_MALFORMED);
    assert_int_equal(decode("{\"t\":\"gossip\",\"x\":1}", &why), US_MSG_UNKNOWN);
    assert_int_equal(decode("", &why), US_MSG_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping),      cmocka_unit_test(test_ping_malformed),
        cmocka_unit_test(test_sizes),     cmocka_unit_test(test_other_types),
        cmocka_unit_test(test_pong_text), cmocka_unit_test(test_ping_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
