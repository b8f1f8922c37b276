/* privilege.h — who a service's processes run as, and the environment they get.
 *
 * Promises:
 *  - us_cred_resolve looks `user` and `group` up in the user database (NSS) in the agent, before
 *    any fork: the child only calls setgroups, setgid and setuid (supervisor.c), which are
 *    async-signal-safe where initgroups() is not. The supplementary groups are those
 *    initgroups(user, gid) would set (getgrouplist).
 *  - A name that does not exist gives -ENOENT and "user 'x' does not exist on NODE" (or group).
 *  - us_env_build is pure: the environment of a child is exactly
 *      PATH=US_SAFE_PATH, LANG=<the agent's LANG, else C.UTF-8>,
 *      HOME/USER/LOGNAME of the account the child runs as (when known),
 *      then the service's `env` assignments (which may replace any of the above),
 *      then the UNDERSTUDY_* variables (which nothing replaces),
 *    and nothing else of the agent's environment.
 */
#ifndef US_PRIVILEGE_H
#define US_PRIVILEGE_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "core/model.h"

#define US_SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define US_DEFAULT_LANG "C.UTF-8"
#define US_CRED_MAX_GROUPS 256

typedef struct us_cred {
    bool drop;     /* switch credentials in the child (a user or group was named) */
    bool set_user; /* ... including the uid */
    uid_t uid;     /* target uid (set_user) */
    gid_t gid;     /* target primary gid (drop) */
    int ngroups;   /* supplementary groups (drop) */
    gid_t groups[US_CRED_MAX_GROUPS];
    char user[US_USER_MAX]; /* account name for USER/LOGNAME; "" = unknown */
    char home[PATH_MAX];    /* for HOME; "" = unknown */
} us_cred;

/* Resolve `user` and `group` ("" = none) on node `node` (for messages). Without a user the
 * names of the agent's own account fill user/home. 0, or -errno with a sentence in `why`. */
int us_cred_resolve(const char *user, const char *group, const char *node, us_cred *out, char *why,
                    size_t whylen);

typedef struct us_env_spec {
    const char *lang;              /* the agent's LANG; NULL or "" = US_DEFAULT_LANG */
    const char *home, *user;       /* NULL or "" = not set */
    const char *const *understudy; /* "UNDERSTUDY_X=..." entries, NULL-terminated; may be NULL */
    int n_env;                     /* the service's env assignments */
    const char (*env)[US_ENV_MAX]; /* "KEY=VALUE" */
} us_env_spec;

/* The NULL-terminated environment described above, in one allocation: free() it. NULL if out of
 * memory. Entries of `env` that are not KEY=VALUE or name UNDERSTUDY_* are skipped. */
char **us_env_build(const us_env_spec *s);

/* The spec for a child of service `d` (may be NULL) running as `cred` (may be NULL): lang from the
 * agent's environment. */
us_env_spec us_env_spec_for(const us_service_def *d, const us_cred *cred,
                            const char *const *understudy);

#endif
