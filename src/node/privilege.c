/* privilege.c — see privilege.h. */
#include "node/privilege.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int us_cred_resolve(const char *user, const char *group, const char *node, us_cred *out, char *why,
                    size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (whylen > 0)
        why[0] = '\0';
    char buf[16384];
    struct passwd pw, *pwr = NULL;
    struct group gr, *grr = NULL;
    int e;
    if (user && user[0]) {
        e = getpwnam_r(user, &pw, buf, sizeof buf, &pwr);
        if (!pwr) {
            if (e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM) {
                snprintf(why, whylen, "user '%s' does not exist on %s", user, node);
                return -ENOENT;
            }
            snprintf(why, whylen, "cannot look up user '%s' on %s: %s", user, node, strerror(e));
            return -e;
        }
        out->drop = out->set_user = true;
        out->uid = pw.pw_uid;
        out->gid = pw.pw_gid;
        us_strlcpy(out->user, pw.pw_name, sizeof out->user);
        us_strlcpy(out->home, pw.pw_dir ? pw.pw_dir : "", sizeof out->home);
    } else {
        /* The agent's own account, for HOME/USER/LOGNAME only. */
        e = getpwuid_r(geteuid(), &pw, buf, sizeof buf, &pwr);
        if (pwr) {
            us_strlcpy(out->user, pw.pw_name, sizeof out->user);
            us_strlcpy(out->home, pw.pw_dir ? pw.pw_dir : "", sizeof out->home);
        }
        out->gid = getegid();
    }
    if (group && group[0]) {
        char gbuf[16384];
        e = getgrnam_r(group, &gr, gbuf, sizeof gbuf, &grr);
        if (!grr) {
            if (e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM) {
                snprintf(why, whylen, "group '%s' does not exist on %s", group, node);
                return -ENOENT;
            }
            snprintf(why, whylen, "cannot look up group '%s' on %s: %s", group, node, strerror(e));
            return -e;
        }
        out->drop = true;
        out->gid = gr.gr_gid;
    }
    if (!out->drop)
        return 0;
    if (out->set_user) {
        int n = US_CRED_MAX_GROUPS;
        if (getgrouplist(out->user, out->gid, out->groups, &n) < 0) {
            snprintf(why, whylen, "user '%s' is in more than %d groups on %s", user,
                     US_CRED_MAX_GROUPS, node);
            return -E2BIG;
        }
        out->ngroups = n;
    } else {
        /* A group alone: that group only, no supplementary groups of the agent's. */
        out->groups[0] = out->gid;
        out->ngroups = 1;
    }
    return 0;
}

static bool key_is(const char *entry, const char *key, size_t klen)
{
    return strncmp(entry, key, klen) == 0 && key[klen] == '=';
}

static size_t key_len(const char *entry)
{
    const char *eq = strchr(entry, '=');
    return eq ? (size_t)(eq - entry) : 0;
}

char **us_env_build(const us_env_spec *s)
{
    char lang[US_ENV_MAX + 8], home[PATH_MAX + 8], user[US_USER_MAX + 8], logname[US_USER_MAX + 8];
    snprintf(lang, sizeof lang, "LANG=%s", s->lang && s->lang[0] ? s->lang : US_DEFAULT_LANG);
    const char *base[5];
    size_t nb = 0;
    base[nb++] = "PATH=" US_SAFE_PATH;
    base[nb++] = lang;
    if (s->home && s->home[0]) {
        snprintf(home, sizeof home, "HOME=%s", s->home);
        base[nb++] = home;
    }
    if (s->user && s->user[0]) {
        snprintf(user, sizeof user, "USER=%s", s->user);
        snprintf(logname, sizeof logname, "LOGNAME=%s", s->user);
        base[nb++] = user;
        base[nb++] = logname;
    }
    size_t nu = 0;
    while (s->understudy && s->understudy[nu])
        nu++;
    int ne = s->n_env > 0 && s->env ? s->n_env : 0;

    /* Pick the entries first (pointers into the inputs), then copy them into one block. */
    size_t cap = nb + (size_t)ne + nu;
    const char **pick = calloc(cap + 1, sizeof *pick);
    if (!pick)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < nb; i++) {
        size_t kl = key_len(base[i]);
        bool replaced = false;
        for (int j = 0; j < ne && !replaced; j++)
            replaced = key_is(s->env[j], base[i], kl);
        if (!replaced)
            pick[n++] = base[i];
    }
    for (int j = 0; j < ne; j++) {
        size_t kl = key_len(s->env[j]);
        if (kl == 0 || strncmp(s->env[j], "UNDERSTUDY_", 11) == 0)
            continue;
        bool dup = false; /* the first assignment of a key wins (the parser refuses doubles) */
        for (int k = 0; k < j && !dup; k++)
            dup = key_is(s->env[k], s->env[j], kl);
        if (!dup)
            pick[n++] = s->env[j];
    }
    for (size_t i = 0; i < nu; i++)
        if (key_len(s->understudy[i]) > 0)
            pick[n++] = s->understudy[i];

    size_t bytes = (n + 1) * sizeof(char *);
    for (size_t i = 0; i < n; i++)
        bytes += strlen(pick[i]) + 1;
    char **envp = malloc(bytes);
    if (!envp) {
        free(pick);
        return NULL;
    }
    char *w = (char *)(envp + n + 1);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(pick[i]) + 1;
        memcpy(w, pick[i], l);
        envp[i] = w;
        w += l;
    }
    envp[n] = NULL;
    free(pick);
    return envp;
}

us_env_spec us_env_spec_for(const us_service_def *d, const us_cred *cred,
                            const char *const *understudy)
{
    us_env_spec s = {
        .lang = getenv("LANG"),
        .home = cred ? cred->home : NULL,
        .user = cred ? cred->user : NULL,
        .understudy = understudy,
        .n_env = d ? d->n_env : 0,
        .env = d ? (const char(*)[US_ENV_MAX])d->env : NULL,
    };
    return s;
}
