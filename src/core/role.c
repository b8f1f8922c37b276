/* role.c — see role.h. */
#include "core/role.h"

#include <string.h>

static bool listed(const us_assignment *as, const char *node)
{
    for (int i = 0; i < as->n_standbys; i++)
        if (strcmp(as->standbys[i], node) == 0)
            return true;
    return false;
}

us_role_answer us_role_of(const us_service_def *d, const us_assignment *as, const char *self,
                          uint64_t self_inc, const us_inst_obs *own, bool lease_ok)
{
    us_role_answer r = {.role = "none"};
    if (!d || !as)
        return r;
    r.epoch = as->epoch;
    bool acting = own && own->state == US_INST_ACTIVE && own->epoch == as->epoch;
    if (as->active[0] && strcmp(as->active, self) == 0 && as->active_inc == self_inc) {
        r.active = acting && lease_ok;
        r.role = r.active ? "active" : "promoting";
        r.demoting = r.active && as->demoting;
        if (!r.active && own && own->epoch == as->epoch &&
            (own->state == US_INST_FAILED || own->state == US_INST_FENCED ||
             own->state == US_INST_DEMOTED))
            r.role = "failed";
        return r;
    }
    if (listed(as, self)) {
        r.role = "standby";
        r.standby = d->standby == US_STANDBY_COLD ||
                    (own && own->state == US_INST_STANDBY && own->health != US_HEALTH_UNHEALTHY);
        return r;
    }
    return r;
}
