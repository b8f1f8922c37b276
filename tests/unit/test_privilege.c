/* test_privilege.c — the child environment builder (pure) and user/group resolution. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/privilege.h"

/* The environment as one "A|B|C" string, for exact comparison. */
static const char *joined(char **envp)
{
    static char buf[8192];
    buf[0] = '\0';
    for (size_t i = 0; envp[i]; i++) {
        if (i)
            strcat(buf, "|");
        strcat(buf, envp[i]);
    }
    return buf;
}

static void test_env_defaults(void **state)
{
    (void)state;
    us_env_spec s = {0};
    char **e = us_env_build(&s);
    assert_non_null(e);
    assert_string_equal(joined(e), "PATH=" US_SAFE_PATH "|LANG=C.UTF-8");
    free(e);

    s.lang = "de_DE.UTF-8";
    s.home = "/var/lib/web";
    s.user = "web";
    const char *u[] = {"UNDERSTUDY_SERVICE=web", "UNDERSTUDY_ROLE=active", NULL};
    s.understudy = u;
    e = us_env_build(&s);
    assert_string_equal(joined(e), "PATH=" US_SAFE_PATH "|LANG=de_DE.UTF-8|HOME=/var/lib/web|"
                                   "USER=web|LOGNAME=web|UNDERSTUDY_SERVICE=web|"
                                   "UNDERSTUDY_ROLE=active");
    free(e);
}

static void test_env_service_assignments(void **state)
{
    (void)state;
    char env[5][US_ENV_MAX] = {"PATH=/opt/app/bin", "A=1", "B=two words", "UNDERSTUDY_ROLE=x",
                               "A=again"};
    const char *u[] = {"UNDERSTUDY_ROLE=standby", NULL};
    us_env_spec s = {
        .lang = "", .user = "", .understudy = u, .n_env = 5, .env = (const char(*)[US_ENV_MAX])env};
    char **e = us_env_build(&s);
    assert_non_null(e);
    /* PATH replaced in place of the default, UNDERSTUDY_* not replaceable, first A wins. */
    assert_string_equal(joined(e), "LANG=C.UTF-8|PATH=/opt/app/bin|A=1|B=two words|"
                                   "UNDERSTUDY_ROLE=standby");
    free(e);
}

static void test_env_spec_for_ignores_agent_env(void **state)
{
    (void)state;
    setenv("US_T_SECRET", "leak", 1);
    setenv("LANG", "fr_FR.UTF-8", 1);
    us_service_def d;
    memset(&d, 0, sizeof d);
    d.n_env = 1;
    strcpy(d.env[0], "X=y");
    us_cred c;
    memset(&c, 0, sizeof c);
    strcpy(c.user, "svc");
    strcpy(c.home, "/home/svc");
    us_env_spec s = us_env_spec_for(&d, &c, NULL);
    char **e = us_env_build(&s);
    assert_string_equal(joined(e), "PATH=" US_SAFE_PATH "|LANG=fr_FR.UTF-8|HOME=/home/svc|"
                                   "USER=svc|LOGNAME=svc|X=y");
    free(e);
    unsetenv("US_T_SECRET");
    unsetenv("LANG");
}

static void test_cred_resolve(void **state)
{
    (void)state;
    us_cred c;
    char why[256];
    assert_int_equal(us_cred_resolve("", "", "n1", &c, why, sizeof why), 0);
    assert_false(c.drop);
    assert_string_equal(why, "");

    assert_int_equal(us_cred_resolve("no-such-user-xyz", "", "n2", &c, why, sizeof why), -ENOENT);
    assert_string_equal(why, "user 'no-such-user-xyz' does not exist on n2");
    assert_int_equal(us_cred_resolve("", "no-such-group-xyz", "n3", &c, why, sizeof why), -ENOENT);
    assert_string_equal(why, "group 'no-such-group-xyz' does not exist on n3");

    assert_int_equal(us_cred_resolve("root", "", "n1", &c, why, sizeof why), 0);
    assert_true(c.drop && c.set_user);
    assert_int_equal(c.uid, 0);
    assert_int_equal(c.gid, 0);
    assert_string_equal(c.user, "root");
    assert_true(c.ngroups >= 1);
    assert_int_equal(c.groups[0], 0);

    /* An explicit group replaces the primary group and is among the groups. */
    assert_int_equal(us_cred_resolve("root", "nogroup", "n1", &c, why, sizeof why), 0);
    assert_int_equal(c.gid, 65534);
    bool has = false;
    for (int i = 0; i < c.ngroups; i++)
        has |= c.groups[i] == 65534;
    assert_true(has);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_defaults),
        cmocka_unit_test(test_env_service_assignments),
        cmocka_unit_test(test_env_spec_for_ignores_agent_env),
        cmocka_unit_test(test_cred_resolve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
