/* stats.c — see stats.h. */
#include "agent/stats.h"

#include <string.h>

#include "core/model.h"
#include "node/check.h"

/* Failovers: a Raft commit and a process start, from milliseconds to a lease or an election. */
static const double failover_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
/* Probes: loopback answers take well under a millisecond, timeouts default to 0.5 s. */
static const double check_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_OF(x) ((int)(sizeof(x) / sizeof((x)[0])))

struct us_metrics_check *us_metrics_check_slot(us_metrics *m, const char *service, bool create)
{
    struct us_metrics_check *free_slot = NULL;
    for (int i = 0; i < US_MAX_SERVICES; i++) {
        if (strcmp(m->check[i].service, service) == 0)
            return &m->check[i];
        if (!m->check[i].service[0] && !free_slot)
            free_slot = &m->check[i];
    }
    if (!create)
        return NULL;
    if (!free_slot) /* more services over time than slots: start over with the oldest */
        free_slot = &m->check[0];
    us_strlcpy(free_slot->service, service, sizeof free_slot->service);
    us_histogram_init(&free_slot->duration, check_le, N_OF(check_le));
    free_slot->probes = free_slot->failures = 0;
    return free_slot;
}

static void on_probe(const char *service, bool pass, double seconds, void *data)
{
    struct us_metrics_check *c = us_metrics_check_slot(data, service, true);
    us_histogram_observe(&c->duration, seconds);
    c->probes++;
    c->failures += !pass;
}

void us_metrics_init(us_metrics *m)
{
    memset(m, 0, sizeof *m);
    us_histogram_init(&m->failover, failover_le, N_OF(failover_le));
    us_check_set_observer(on_probe, m);
}

void us_metrics_close(us_metrics *m)
{
    (void)m;
    us_check_set_observer(NULL, NULL);
}

void us_metrics_leader_seen(us_metrics *m, uint64_t leader_id, uint64_t term)
{
    if (leader_id == 0 || (leader_id == m->seen_leader_id && term == m->seen_leader_term))
        return;
    m->leader_changes++;
    m->seen_leader_id = leader_id;
    m->seen_leader_term = term;
}
