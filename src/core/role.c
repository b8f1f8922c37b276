/* role.c — see role.h. */
#include "core/role.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lib/hostport.h"

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
                    (own && own->state == US_INST_STANDBY && own->health != US_HEALTH_UNHEALTHY &&
                     (!d->follow[0] || own->followed == as->epoch));
        return r;
    }
    return r;
}

const char *us_assigned_role(const us_state *s, const char *service, const char *node,
                             uint64_t *epoch)
{
    int k = us_state_find_service(s, service);
    const us_assignment *as = k >= 0 ? &s->asg[k] : NULL;
    *epoch = as ? as->epoch : 0;
    return !as                             ? "none"
           : strcmp(as->active, node) == 0 ? "active"
           : listed(as, node)              ? "standby"
                                           : "none";
}

bool us_position_parse(const char *text, size_t len, int64_t *out)
{
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    int64_t v = 0;
    size_t digits = 0;
    for (; i < len && text[i] >= '0' && text[i] <= '9'; i++, digits++) {
        int d = text[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    if (digits == 0 || i != len)
        return false;
    *out = v;
    return true;
}

void us_active_env_of(const us_state *s, const char *service, us_active_env *out)
{
    char host[US_ADDR_MAX] = "";
    int k = us_state_find_service(s, service);
    const us_assignment *as = k >= 0 ? &s->asg[k] : NULL;
    bool active = as && as->active[0];
    if (active) {
        int n = us_state_find_node(s, as->active);
        if (n >= 0 && s->nodes[n].service_host[0])
            us_strlcpy(host, s->nodes[n].service_host, sizeof host);
        else if (n >= 0 && us_parse_hostport(s->nodes[n].address, host, sizeof host, NULL) != 0)
            host[0] = 0;
    }
    snprintf(out->node, sizeof out->node, "UNDERSTUDY_ACTIVE_NODE=%s", active ? as->active : "");
    snprintf(out->host, sizeof out->host, "UNDERSTUDY_ACTIVE_HOST=%s", host);
    if (active)
        snprintf(out->epoch, sizeof out->epoch, "UNDERSTUDY_ACTIVE_EPOCH=%llu",
                 (unsigned long long)as->epoch);
    else
        snprintf(out->epoch, sizeof out->epoch, "UNDERSTUDY_ACTIVE_EPOCH=");
    size_t len = (size_t)snprintf(out->standbys, sizeof out->standbys, "UNDERSTUDY_STANDBYS=");
    for (int i = 0; as && i < as->n_standbys && len < sizeof out->standbys; i++)
        len += (size_t)snprintf(out->standbys + len, sizeof out->standbys - len, "%s%s",
                                i ? " " : "", as->standbys[i]);
}
