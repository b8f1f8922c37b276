/* test_role.c — what a node answers to GET /v1/services/NAME/role[/standby] (core/role.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/role.h"

static us_service_def def(us_standby_mode mode)
{
    us_service_def d;
    memset(&d, 0, sizeof d);
    strcpy(d.name, "db");
    d.standby = mode;
    return d;
}

/* Active n1 (incarnation 7) at epoch 4, standby n2. */
static us_assignment asg(void)
{
    us_assignment a;
    memset(&a, 0, sizeof a);
    strcpy(a.service, "db");
    a.epoch = 4;
    strcpy(a.active, "n1");
    a.active_inc = 7;
    a.n_standbys = 1;
    strcpy(a.standbys[0], "n2");
    return a;
}

static us_inst_obs obs(us_inst_state st, uint64_t epoch, us_health h)
{
    us_inst_obs o;
    memset(&o, 0, sizeof o);
    o.state = st;
    o.epoch = epoch;
    o.health = h;
    return o;
}

static void test_active_only_while_acting_with_a_lease(void **state)
{
    (void)state;
    us_service_def d = def(US_STANDBY_HOT);
    us_assignment a = asg();
    us_inst_obs act = obs(US_INST_ACTIVE, 4, US_HEALTH_HEALTHY);
    us_role_answer r = us_role_of(&d, &a, "n1", 7, &act, true);
    assert_true(r.active);
    assert_false(r.standby);
    assert_string_equal(r.role, "active");
    assert_int_equal(r.epoch, 4);
    assert_false(r.demoting);
    /* No lease: not active, whatever the instance says. */
    r = us_role_of(&d, &a, "n1", 7, &act, false);
    assert_false(r.active);
    assert_string_equal(r.role, "promoting");
    /* Given the role but not acting yet, or acting under an older epoch. */
    us_inst_obs sb = obs(US_INST_STANDBY, 3, US_HEALTH_HEALTHY);
    r = us_role_of(&d, &a, "n1", 7, &sb, true);
    assert_false(r.active);
    assert_string_equal(r.role, "promoting");
    us_inst_obs old = obs(US_INST_ACTIVE, 3, US_HEALTH_HEALTHY);
    assert_false(us_role_of(&d, &a, "n1", 7, &old, true).active);
    assert_false(us_role_of(&d, &a, "n1", 7, NULL, true).active);
    /* The role was given to another incarnation of this node's agent. */
    r = us_role_of(&d, &a, "n1", 8, &act, true);
    assert_false(r.active);
    assert_string_equal(r.role, "none");
    /* Another node is the active. */
    r = us_role_of(&d, &a, "n3", 7, &act, true);
    assert_false(r.active);
    assert_string_equal(r.role, "none");
    /* A planned switchover: still active while it acts, and says so. */
    a.demoting = true;
    r = us_role_of(&d, &a, "n1", 7, &act, true);
    assert_true(r.active);
    assert_true(r.demoting);
    /* Failed or fenced under the current epoch. */
    a.demoting = false;
    us_inst_obs failed = obs(US_INST_FAILED, 4, US_HEALTH_UNKNOWN);
    r = us_role_of(&d, &a, "n1", 7, &failed, true);
    assert_false(r.active);
    assert_string_equal(r.role, "failed");
}

static void test_standby_readiness(void **state)
{
    (void)state;
    us_service_def hot = def(US_STANDBY_HOT), cold = def(US_STANDBY_COLD);
    us_assignment a = asg();
    us_inst_obs ok = obs(US_INST_STANDBY, 0, US_HEALTH_HEALTHY);
    us_inst_obs unknown = obs(US_INST_STANDBY, 0, US_HEALTH_UNKNOWN);
    us_inst_obs sick = obs(US_INST_STANDBY, 0, US_HEALTH_UNHEALTHY);
    us_inst_obs failed = obs(US_INST_FAILED, 0, US_HEALTH_UNKNOWN);
    us_role_answer r = us_role_of(&hot, &a, "n2", 1, &ok, false);
    assert_true(r.standby);
    assert_false(r.active);
    assert_string_equal(r.role, "standby");
    assert_true(us_role_of(&hot, &a, "n2", 1, &unknown, false).standby);
    assert_false(us_role_of(&hot, &a, "n2", 1, &sick, false).standby);
    assert_false(us_role_of(&hot, &a, "n2", 1, &failed, false).standby);
    assert_false(us_role_of(&hot, &a, "n2", 1, NULL, false).standby);
    /* A cold standby runs nothing until promoted: listed is ready. */
    assert_true(us_role_of(&cold, &a, "n2", 1, NULL, false).standby);
    /* With `follow`: ready once it followed the current active (epoch 4), not an earlier one. */
    strcpy(hot.follow, "/bin/true");
    assert_false(us_role_of(&hot, &a, "n2", 1, &ok, false).standby);
    ok.followed = 3;
    assert_false(us_role_of(&hot, &a, "n2", 1, &ok, false).standby);
    ok.followed = 4;
    assert_true(us_role_of(&hot, &a, "n2", 1, &ok, false).standby);
    sick.followed = 4;
    assert_false(us_role_of(&hot, &a, "n2", 1, &sick, false).standby);
    /* Not listed: neither. */
    r = us_role_of(&cold, &a, "n3", 1, NULL, true);
    assert_false(r.standby);
    assert_false(r.active);
    assert_string_equal(r.role, "none");
}

/* What a position command printed: one decimal number, blanks around it, nothing else. */
static void test_position_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool ok;
        int64_t want;
    } cases[] = {
        {"0", true, 0},
        {"12345\n", true, 12345},
        {"  77 \r\n", true, 77},
        {"9223372036854775807", true, INT64_MAX},
        {"9223372036854775808", false, 0},
        {"99999999999999999999", false, 0},
        {"", false, 0},
        {" \n", false, 0},
        {"-1", false, 0},
        {"+5", false, 0},
        {"0/3000060", false, 0},
        {"12 13", false, 0},
        {"12abc", false, 0},
        {"0x10", false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = -7;
        bool ok = us_position_parse(cases[i].text, strlen(cases[i].text), &v);
        if (ok != cases[i].ok || (ok && v != cases[i].want))
            fail_msg("'%s': got %d %lld", cases[i].text, ok, (long long)v);
    }
    /* Not NUL-terminated: only len bytes count. */
    assert_true(us_position_parse("42xyz", 2, &(int64_t){0}));
    assert_false(us_position_parse("42\0", 3, &(int64_t){0}));
}

static void test_no_service_or_assignment(void **state)
{
    (void)state;
    us_service_def d = def(US_STANDBY_HOT);
    us_assignment a = asg();
    us_role_answer r = us_role_of(NULL, &a, "n1", 7, NULL, true);
    assert_false(r.active || r.standby);
    assert_string_equal(r.role, "none");
    r = us_role_of(&d, NULL, "n1", 7, NULL, true);
    assert_false(r.active || r.standby);
    assert_int_equal(r.epoch, 0);
    /* Nobody active yet. */
    memset(a.active, 0, sizeof a.active);
    a.epoch = 0;
    r = us_role_of(&d, &a, "n1", 7, NULL, true);
    assert_false(r.active);
    assert_string_equal(r.role, "none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_active_only_while_acting_with_a_lease),
        cmocka_unit_test(test_standby_readiness),
        cmocka_unit_test(test_position_parse),
        cmocka_unit_test(test_no_service_or_assignment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
