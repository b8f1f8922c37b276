/* fuzz_msg.c — datagram payloads after decryption (msg.h us_msg_decode): whatever the bytes, the
 * decoder returns one of its results, and what it accepts is within the ranges msg.h promises.
 * The same bytes as a `position` command's output (role.h us_position_parse): a number >= 0 or
 * a refusal. */
#include "fuzz.h"

#include "core/msg.h"
#include "core/role.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static us_msg m;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t pos = -1;
    if (us_position_parse((const char *)data, size, &pos))
        FUZZ_CHECK(pos >= 0);
    const char *why = NULL;
    us_msg_result r = us_msg_decode(data, size, &m, &why);
    FUZZ_CHECK(r == US_MSG_OK || r == US_MSG_MALFORMED || r == US_MSG_UNKNOWN);
    if (r != US_MSG_OK) {
        FUZZ_CHECK(why != NULL);
        return 0;
    }
    FUZZ_CHECK((unsigned)m.type < US_MSG_TYPES);
    if (m.type == US_MSG_PING) {
        const us_msg_ping *p = &m.u.ping;
        FUZZ_CHECK(p->round > 0);
        FUZZ_CHECK(p->n_reports >= 0 && p->n_reports <= US_MSG_REPORTS_MAX);
        FUZZ_CHECK(p->n_leases >= 0 && p->n_leases <= US_MAX_NODES);
        for (int i = 0; i < p->n_reports; i++) {
            FUZZ_CHECK(us_name_valid(p->reports[i].service));
            FUZZ_CHECK(p->reports[i].obs.state <= US_INST_FENCED);
            FUZZ_CHECK(p->reports[i].obs.health <= US_HEALTH_UNHEALTHY);
            FUZZ_CHECK(p->reports[i].pid >= 0 && p->reports[i].check_ms >= -1);
            FUZZ_CHECK(p->reports[i].obs.position >= -1);
            FUZZ_CHECK(memchr(p->reports[i].obs.cause, 0, sizeof p->reports[i].obs.cause));
        }
        for (int i = 0; i < p->n_leases; i++)
            FUZZ_CHECK(us_name_valid(p->leases[i].node) && p->leases[i].age >= -1);
    } else if (m.type == US_MSG_JOIN) {
        FUZZ_CHECK(us_name_valid(m.u.join.name));
    } else if (m.type == US_MSG_FENCED) {
        FUZZ_CHECK(m.u.fenced.n >= 0 && m.u.fenced.n <= US_MAX_SERVICES);
        for (int i = 0; i < m.u.fenced.n; i++)
            FUZZ_CHECK(us_name_valid(m.u.fenced.fenced[i].service));
    }
    return 0;
}
