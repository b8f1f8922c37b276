/* reports.c — see reports.h. */
#include "agent/reports.h"

#include <string.h>

void us_report_make(const us_report_source *src, us_report *out)
{
    memset(out, 0, sizeof *out);
    us_strlcpy(out->service, src->service, sizeof out->service);
    out->obs = src->obs;
    out->pid = src->pid;
    out->px_epoch = src->px_epoch;
    out->px_open = src->px_open;
    out->check_ms = src->has_checks ? src->check_ms : -1;
    out->probes = src->has_checks ? src->probes : 0;
    out->probes_failed = src->has_checks ? src->probes_failed : 0;
    out->restarts = src->restarts_total;
    us_strlcpy(out->restart_cause, src->restart_cause ? src->restart_cause : "",
               sizeof out->restart_cause);
}

bool us_report_says_nothing(const us_report *r)
{
    const us_inst_obs *o = &r->obs;
    return o->state == US_INST_NONE && o->health == US_HEALTH_UNKNOWN && !o->cause[0] &&
           o->exit_status == 0 && !o->refused && o->followed == 0 && r->pid == 0 &&
           r->px_open == 0 && r->probes == 0 && r->probes_failed == 0 && r->restarts == 0 &&
           !r->restart_cause[0];
}

const us_report *us_report_find(const us_report *reports, int n, const char *service)
{
    for (int i = 0; i < n; i++)
        if (strcmp(reports[i].service, service) == 0)
            return &reports[i];
    return NULL;
}
