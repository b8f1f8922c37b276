/* test_config.c — node config, services file, INI reader, durations and timing profiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "core/fsm.h"
#include "config/ini.h"
#include "lib/key.h"
#include "lib/hostport.h"
#include "helpers.h"

static char g_dir[64];
static char g_joined[US_ERRORS_MAX * US_ERROR_LEN + 64];

static int group_setup(void **state)
{
    (void)state;
    if (!ut_mkdtemp(g_dir, sizeof g_dir, "test-config"))
        return -1;
    char key[PATH_MAX], why[512];
    snprintf(key, sizeof key, "%s/cluster.key", g_dir);
    if (us_keygen(key, false, why, sizeof why) != 0)
        return -1;
    snprintf(key, sizeof key, "%s/api.token", g_dir);
    return us_keygen(key, true, why, sizeof why);
}

static us_service_def *g_set_owned; /* test_config's services parses: see parse_svc */

static int group_teardown(void **state)
{
    (void)state;
    free(g_set_owned);
    return ut_rmtree(g_dir);
}

/* Path of `name` inside the test directory (static buffer: one at a time). */
static const char *tmp_path(const char *name)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return path;
}

/* Node configs get the test's cluster key and API token in sections appended at the end (line
 * numbers stay) unless they name them or lack the section: both are required, and most tests are
 * about other keys. */
static const char *write_file(const char *name, const char *text)
{
    static char with_key[16384];
    bool key = strstr(text, "[cluster]\n") && !strstr(text, "key_file");
    bool token = strstr(text, "[node]\n") && !strstr(text, "api_token_file");
    if ((key || token) && strlen(text) + 3 * PATH_MAX < sizeof with_key) {
        size_t n = strlen(text);
        int w =
            snprintf(with_key, sizeof with_key, "%s%s", text, n && text[n - 1] != '\n' ? "\n" : "");
        if (key)
            w += snprintf(with_key + w, sizeof with_key - (size_t)w,
                          "[cluster]\nkey_file = %s/cluster.key\n", g_dir);
        if (token)
            snprintf(with_key + w, sizeof with_key - (size_t)w,
                     "[node]\napi_token_file = %s/api.token\n", g_dir);
        text = with_key;
    }
    const char *path = tmp_path(name);
    assert_int_equal(ut_write_file(path, text), 0);
    return path;
}

static const char *joined(const us_errors *e)
{
    us_errors_join(e, g_joined, sizeof g_joined);
    return g_joined;
}

/* Assert that one single message contains every given fragment (NULL-terminated list). */
static void expect_msg_(const us_errors *e, const char *file, int line, ...)
{
    for (int i = 0; i < e->n; i++) {
        va_list ap;
        va_start(ap, line);
        bool all = true;
        for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;)
            if (!strstr(e->msg[i], frag))
                all = false;
        va_end(ap);
        if (all)
            return;
    }
    va_list ap;
    va_start(ap, line);
    fprintf(stderr, "%s:%d: no error message contains all of:", file, line);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;)
        fprintf(stderr, " [%s]", frag);
    va_end(ap);
    fprintf(stderr, "\nmessages:\n%s\n", joined(e));
    fail();
}
#define expect_msg(e, ...) expect_msg_((e), __FILE__, __LINE__, __VA_ARGS__, (const char *)NULL)

/* ---- node config ---- */

/* A valid config whose data_dir lives in the test directory; `extra` is appended verbatim. */
static const char *node_text(const char *node_extra, const char *cluster_extra)
{
    static char text[8192];
    snprintf(text, sizeof text,
             "[node]\n"
             "name = n1\n"
             "address = 127.0.0.1:7101\n"
             "data_dir = %s/data-n1\n"
             "%s"
             "[cluster]\n"
             "name = demo\n"
             "%s",
             g_dir, node_extra, cluster_extra);
    return text;
}

/* Load `text` written to a file; returns the rc, fills *cfg and *err. */
static int load_text(const char *text, us_node_config *cfg, us_errors *err, const char **path)
{
    const char *p = write_file("node.ini", text);
    if (path)
        *path = p;
    memset(err, 0, sizeof *err);
    return us_config_load_node(p, cfg, err);
}

static us_node_config g_cfg; /* big: keep it off the stack */

static void test_node_valid_full(void **state)
{
    (void)state;
    char text[4096];
    snprintf(text, sizeof text,
             "# understudy node config\n"
             "[node]\n"
             "name = n1                       # unique; [a-z0-9-]\n"
             "address = 127.0.0.1:7101        # cluster traffic\n"
             "api = 127.0.0.1:7201            # HTTP API\n"
             "data_dir = %s/deep/er/data/     # created if missing\n"
             "\n"
             "[cluster]\n"
             "name = demo\n"
             "members = n1=127.0.0.1:7101 n2=127.0.0.1:7102 n3=127.0.0.1:7103   # voters\n"
             "join = 127.0.0.1:7102 127.0.0.1:7103\n"
             "profile = fast\n",
             g_dir);
    us_errors err;
    const char *path;
    int rc = load_text(text, &g_cfg, &err, &path);
    if (rc != 0)
        fprintf(stderr, "%s\n", joined(&err));
    assert_int_equal(rc, 0);
    assert_int_equal(err.n, 0);
    assert_string_equal(g_cfg.path, path);
    assert_string_equal(g_cfg.name, "n1");
    assert_string_equal(g_cfg.address, "127.0.0.1:7101");
    assert_string_equal(g_cfg.api, "127.0.0.1:7201");
    char dd[PATH_MAX];
    snprintf(dd, sizeof dd, "%s/deep/er/data", g_dir);
    assert_string_equal(g_cfg.data_dir, dd);
    struct stat st;
    assert_int_equal(stat(dd, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_string_equal(g_cfg.cluster_name, "demo");
    assert_int_equal(g_cfg.n_members, 3);
    assert_string_equal(g_cfg.members[0].name, "n1");
    assert_string_equal(g_cfg.members[2].name, "n3");
    assert_string_equal(g_cfg.members[2].address, "127.0.0.1:7103");
    assert_int_equal(g_cfg.n_join, 2);
    assert_string_equal(g_cfg.join[1], "127.0.0.1:7103");
    assert_string_equal(g_cfg.timing.name, "fast");
    assert_int_equal(g_cfg.timing.heartbeat_ms, 25);
    assert_int_equal(g_cfg.timing.lease_ms, 200);
}

static void test_node_defaults(void **state)
{
    (void)state;
    us_errors err;
    int rc = load_text(node_text("", "members = n1=10.1.2.3:7101 n2=10.1.2.4:7101\n"), &g_cfg, &err,
                       NULL);
    /* address is 127.0.0.1:7101 but the member says 10.1.2.3: must fail first */
    assert_int_equal(rc, -1);
    rc = load_text(node_text("", "members = n1=127.0.0.1:7101 n2=10.1.2.4:7101\n"), &g_cfg, &err,
                   NULL);
    if (rc != 0)
        fprintf(stderr, "%s\n", joined(&err));
    assert_int_equal(rc, 0);
    assert_string_equal(g_cfg.api, "127.0.0.1:7201");
    assert_string_equal(g_cfg.timing.name, "default");
    assert_int_equal(g_cfg.timing.heartbeat_ms, 100);
    assert_int_equal(g_cfg.n_join, 0);
    assert_int_equal(g_cfg.n_members, 2);
}

static void test_node_join_only(void **state)
{
    (void)state;
    us_errors err;
    int rc =
        load_text(node_text("api = 0.0.0.0:8080\napi_insecure = yes\n", "join = 127.0.0.1:7102\n"),
                  &g_cfg, &err, NULL);
    if (rc != 0)
        fprintf(stderr, "%s\n", joined(&err));
    assert_int_equal(rc, 0);
    assert_true(g_cfg.api_insecure);
    assert_int_equal(g_cfg.n_members, 0);
    assert_int_equal(g_cfg.n_join, 1);
    assert_string_equal(g_cfg.api, "0.0.0.0:8080");
}

static void test_node_missing_file(void **state)
{
    (void)state;
    us_errors err = {0};
    const char *path = tmp_path("does-not-exist.ini");
    assert_int_equal(us_config_load_node(path, &g_cfg, &err), -1);
    assert_int_equal(err.n, 1);
    expect_msg(&err, path, "cannot read", strerror(ENOENT));

    memset(&err, 0, sizeof err);
    assert_int_equal(us_config_load_node(g_dir, &g_cfg, &err), -1); /* a directory */
    expect_msg(&err, g_dir, "cannot read");
}

static void test_node_missing_keys(void **state)
{
    (void)state;
    us_errors err;
    const char *path;
    assert_int_equal(load_text("# nothing here\n", &g_cfg, &err, &path), -1);
    char prefix[PATH_MAX + 8];
    snprintf(prefix, sizeof prefix, "%s: missing key", path);
    assert_int_equal(err.n, 7);
    expect_msg(&err, prefix, "'cluster.key_file'", "understudy keygen");
    expect_msg(&err, prefix, "'node.api_token_file'", "understudy keygen --token");
    expect_msg(&err, prefix, "'node.name'", "expected");
    expect_msg(&err, prefix, "'node.address'", "expected");
    expect_msg(&err, prefix, "'node.data_dir'", "expected");
    expect_msg(&err, prefix, "'cluster.name'", "expected");
    expect_msg(&err, prefix, "'cluster.members' or 'cluster.join'", "expected");
}

/* The cluster key: required, private, well-formed; a second key is accepted (rotation). */
static void test_node_key_file(void **state)
{
    (void)state;
    us_errors err;
    char text[8192], key[PATH_MAX];
    const char *path;
    const char *hex1 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const char *hex2 = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    static const struct {
        const char *name, *content;
        int mode;
        const char *want; /* NULL: valid */
        int n_keys;
    } cases[] = {
        {"k-missing", NULL, 0, "No such file or directory (create one with `understudy keygen", 0},
        {"k-open", "%s\n", 0640, "readable or writable by group or others", 0},
        {"k-short", "0011\n", 0600, "k-short:1: expected a key of 64 hexadecimal digits", 0},
        {"k-empty", "# only a comment\n\n", 0600, "holds no key", 0},
        {"k-three", "%s\n%s\n%s\n", 0600, "more than 2 keys", 0},
        {"k-one", "# c\n%s\n", 0600, NULL, 1},
        {"k-two", "%s\n%s\n", 0600, NULL, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(key, sizeof key, "%s", tmp_path(cases[i].name));
        if (cases[i].content) {
            char body[512];
            snprintf(body, sizeof body, cases[i].content, hex1, hex2, hex1);
            assert_int_equal(ut_write_file(key, body), 0);
            assert_int_equal(chmod(key, (mode_t)cases[i].mode), 0);
        }
        snprintf(text, sizeof text, "%skey_file = %s\n",
                 node_text("", "members = n1=127.0.0.1:7101\n"), key);
        int rc = load_text(text, &g_cfg, &err, &path);
        if (!cases[i].want) {
            if (rc != 0)
                fprintf(stderr, "%s\n", joined(&err));
            assert_int_equal(rc, 0);
            assert_int_equal(g_cfg.keys.n, cases[i].n_keys);
            assert_int_equal(g_cfg.keys.key[0][0], 0x00);
            assert_int_equal(g_cfg.keys.key[0][1], 0x11);
            if (cases[i].n_keys == 2) {
                assert_int_equal(g_cfg.keys.key[1][0], 0xff);
                assert_int_not_equal(g_cfg.keys.id[0], g_cfg.keys.id[1]);
                assert_ptr_equal(us_keyring_find(&g_cfg.keys, g_cfg.keys.id[1]), g_cfg.keys.key[1]);
            }
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(err.n, 1);
            expect_msg(&err, path, "key 'cluster.key_file'", cases[i].want, "understudy keygen");
        }
    }
    /* keygen: mode 0600, a valid key, never over an existing file. */
    char why[512];
    snprintf(key, sizeof key, "%s", tmp_path("k-gen"));
    assert_int_equal(us_keygen(key, false, why, sizeof why), 0);
    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    us_keyring ring;
    assert_int_equal(us_keyring_load(key, &ring, why, sizeof why), 0);
    assert_int_equal(ring.n, 1);
    assert_int_equal(us_keygen(key, false, why, sizeof why), -EEXIST);
    assert_non_null(strstr(why, "exists already"));
}

static void test_node_unknown_section_and_key(void **state)
{
    (void)state;
    us_errors err;
    const char *path;
    char text[8192];
    snprintf(text, sizeof text, "%s[raft]\nsnapshot = 10\n[node]\ncolour = blue\n",
             node_text("", "members = n1=127.0.0.1:7101\n"));
    assert_int_equal(load_text(text, &g_cfg, &err, &path), -1);
    char where[PATH_MAX + 16];
    snprintf(where, sizeof where, "%s:8:", path);
    expect_msg(&err, where, "unknown section '[raft]'");
    snprintf(where, sizeof where, "%s:11:", path);
    expect_msg(&err, where, "unknown key 'node.colour'", "known keys: name, address");
    assert_int_equal(err.n, 2); /* keys of the unknown section are not reported one by one */
}

static void test_node_duplicate_key(void **state)
{
    (void)state;
    us_errors err;
    const char *path;
    assert_int_equal(
        load_text(node_text("name = n2\n", "members = n1=127.0.0.1:7101\n"), &g_cfg, &err, &path),
        -1);
    char where[PATH_MAX + 16];
    snprintf(where, sizeof where, "%s:5:", path);
    expect_msg(&err, where, "duplicate key 'node.name'", "first set on line 2");
    assert_int_equal(err.n, 1);
}

static void test_node_bad_names(void **state)
{
    (void)state;
    static const char *bad[] = {"N1", "n_1", "n 1", "",
                                "a234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[8192];
        snprintf(text, sizeof text,
                 "[node]\nname = %s\naddress = 127.0.0.1:7101\ndata_dir = %s/d\n"
                 "[cluster]\nname = demo\njoin = 127.0.0.1:7102\n",
                 bad[i], g_dir);
        us_errors err;
        const char *path;
        assert_int_equal(load_text(text, &g_cfg, &err, &path), -1);
        char where[PATH_MAX + 16], got[128];
        snprintf(where, sizeof where, "%s:2:", path);
        snprintf(got, sizeof got, "got '%s'", bad[i]);
        expect_msg(&err, where, "key 'node.name'", "expected a name of [a-z0-9-]", got);
        assert_int_equal(err.n, 1);
    }
    us_errors err;
    const char *path;
    char text[8192];
    snprintf(text, sizeof text, "%s", node_text("", "members = n1=127.0.0.1:7101\n"));
    char *p = strstr(text, "name = demo");
    memcpy(p, "name = Demo", 11);
    assert_int_equal(load_text(text, &g_cfg, &err, &path), -1);
    expect_msg(&err, ":6:", "key 'cluster.name'", "got 'Demo'");
}

static void test_hostport(void **state)
{
    (void)state;
    char host[16];
    int port = 0;
    assert_int_equal(us_parse_hostport("127.0.0.1:7101", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7101);
    assert_int_equal(us_parse_hostport("255.255.255.255:65535", host, sizeof host, &port), 0);
    assert_int_equal(port, 65535);
    assert_int_equal(us_parse_hostport("0.0.0.0:1", host, sizeof host, &port), 0);
    static const char *bad[] = {
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:+80",
        "127.0.0.1:08",
        "256.0.0.1:80",
        "1.2.3:80",
        "1.2.3.4.5:80",
        "localhost:7101",
        "01.2.3.4:80",
        "1.2.3.4 :80",
        ":80",
        "",
        "1..3.4:80",
        "1.2.3.4:80:90",
        "[::1]:80",
        "1.2.3.4:99999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (us_parse_hostport(bad[i], host, sizeof host, &port) != -EINVAL)
            fail_msg("accepted '%s'", bad[i]);
    }
    assert_int_equal(us_parse_hostport("1.2.3.4:80", host, 4, &port), -EINVAL); /* host too small */
}

static void test_node_bad_addresses(void **state)
{
    (void)state;
    static const char *bad[] = {"127.0.0.1", "127.0.0.1:0", "localhost:7101", "300.1.1.1:7101",
                                "0.0.0.0:7101"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[8192];
        snprintf(text, sizeof text,
                 "[node]\nname = n1\naddress = %s\napi = 127.0.0.2:5\ndata_dir = %s/d\n"
                 "[cluster]\nname = demo\njoin = 127.0.0.1:7102 127.0.0.1:71o2\n",
                 bad[i], g_dir);
        us_errors err;
        const char *path;
        assert_int_equal(load_text(text, &g_cfg, &err, &path), -1);
        char where[PATH_MAX + 16], got[128];
        snprintf(where, sizeof where, "%s:3:", path);
        snprintf(got, sizeof got, "got '%s'", bad[i]);
        expect_msg(&err, where, "key 'node.address'", "expected IPv4:port", got);
        snprintf(where, sizeof where, "%s:8:", path);
        expect_msg(&err, where, "key 'cluster.join'", "got '127.0.0.1:71o2'");
        assert_int_equal(err.n, 2);
    }
    us_errors err;
    assert_int_equal(load_text(node_text("api = 127.0.0.1:http\n", "join = 127.0.0.1:7102\n"),
                               &g_cfg, &err, NULL),
                     -1);
    expect_msg(&err, ":5:", "key 'node.api'", "got '127.0.0.1:http'");
    assert_int_equal(err.n, 1);
}

static void test_node_api_conflict(void **state)
{
    (void)state;
    us_errors err;
    assert_int_equal(
        load_text(node_text("api = 0.0.0.0:7101\n", "join = 127.0.0.1:7102\n"), &g_cfg, &err, NULL),
        -1);
    expect_msg(&err, ":5:", "key 'node.api'", "got '0.0.0.0:7101'");
    char text[8192];
    snprintf(text, sizeof text,
             "[node]\nname = n1\naddress = 127.0.0.1:7201\ndata_dir = %s/d\n"
             "[cluster]\nname = demo\njoin = 127.0.0.1:7102\n",
             g_dir);
    assert_int_equal(load_text(text, &g_cfg, &err, NULL), -1);
    expect_msg(&err, ":3:", "key 'node.address'", "'node.api'");
}

static void test_node_members_errors(void **state)
{
    (void)state;
    us_errors err;
    const char *path;
    /* duplicate name, duplicate address, malformed entry, bad member name */
    assert_int_equal(load_text(node_text("", "members = n1=127.0.0.1:7101 n2=127.0.0.1:7102 "
                                             "n2=127.0.0.1:7103 n4=127.0.0.1:7102 n5 "
                                             "N6=127.0.0.1:7106\n"),
                               &g_cfg, &err, &path),
                     -1);
    char where[PATH_MAX + 16];
    snprintf(where, sizeof where, "%s:7:", path);
    expect_msg(&err, where, "key 'cluster.members'", "unique member names", "got 'n2'");
    expect_msg(&err, where, "key 'cluster.members'", "unique member addresses",
               "got '127.0.0.1:7102'");
    expect_msg(&err, where, "key 'cluster.members'", "NAME=IPv4:port", "got 'n5'");
    expect_msg(&err, where, "key 'cluster.members'", "member names", "got 'N6'");
    assert_int_equal(err.n, 4);

    /* this node's entry has another address */
    assert_int_equal(load_text(node_text("", "members = n1=127.0.0.1:7109 n2=127.0.0.1:7102\n"),
                               &g_cfg, &err, &path),
                     -1);
    expect_msg(&err, where, "key 'cluster.members'", "127.0.0.1:7101", "got 'n1=127.0.0.1:7109'");
    assert_int_equal(err.n, 1);

    /* another member claims this node's address */
    assert_int_equal(load_text(node_text("", "members = n2=127.0.0.1:7101 n3=127.0.0.1:7103\n"
                                             "join = 127.0.0.1:7103\n"),
                               &g_cfg, &err, &path),
                     -1);
    expect_msg(&err, where, "key 'cluster.members'", "node.address to belong to 'n1'", "got 'n2'");
    assert_int_equal(err.n, 1);

    /* this node is not a member and there is no join */
    assert_int_equal(load_text(node_text("", "members = n2=127.0.0.1:7102 n3=127.0.0.1:7103\n"),
                               &g_cfg, &err, &path),
                     -1);
    expect_msg(&err, where, "key 'cluster.members'", "'n1'", "cluster.join", "got 'n2 n3'");
    assert_int_equal(err.n, 1);
    /* ... which join fixes */
    assert_int_equal(load_text(node_text("", "members = n2=127.0.0.1:7102 n3=127.0.0.1:7103\n"
                                             "join = 127.0.0.1:7102\n"),
                               &g_cfg, &err, &path),
                     0);

    /* too many */
    char members[4096] = "members =";
    for (int i = 1; i <= US_MAX_NODES + 1; i++) {
        size_t used = strlen(members);
        snprintf(members + used, sizeof members - used, " n%d=127.0.0.1:%d", i, 7100 + i);
    }
    strcat(members, "\n");
    assert_int_equal(load_text(node_text("", members), &g_cfg, &err, &path), -1);
    expect_msg(&err, where, "key 'cluster.members'", "at most 64 members");

    /* empty and duplicate join */
    assert_int_equal(load_text(node_text("", "members =\njoin = 127.0.0.1:7102 127.0.0.1:7102\n"),
                               &g_cfg, &err, &path),
                     -1);
    expect_msg(&err, where, "key 'cluster.members'", "got ''");
    snprintf(where, sizeof where, "%s:8:", path);
    expect_msg(&err, where, "key 'cluster.join'", "unique addresses", "got '127.0.0.1:7102'");
    assert_int_equal(err.n, 2);
}

static void test_node_unknown_profile(void **state)
{
    (void)state;
    us_errors err;
    const char *path;
    assert_int_equal(
        load_text(node_text("", "join = 127.0.0.1:7102\nprofile = turbo\n"), &g_cfg, &err, &path),
        -1);
    char where[PATH_MAX + 16];
    snprintf(where, sizeof where, "%s:8:", path);
    expect_msg(&err, where, "key 'cluster.profile'", "'default' or 'fast'", "got 'turbo'");
    assert_int_equal(err.n, 1);
}

static void test_node_events_max(void **state)
{
    (void)state;
    us_errors err;
    const char *path;
    assert_int_equal(load_text(node_text("", "join = 127.0.0.1:7102\n"), &g_cfg, &err, NULL), 0);
    assert_int_equal(g_cfg.events_max, US_EVENTS_DEFAULT);
    assert_int_equal(
        load_text(node_text("", "join = 127.0.0.1:7102\nevents_max = 16\n"), &g_cfg, &err, NULL),
        0);
    assert_int_equal(g_cfg.events_max, 16);
    assert_int_equal(load_text(node_text("", "join = 127.0.0.1:7102\nevents_max = 100000\n"),
                               &g_cfg, &err, NULL),
                     0);
    assert_int_equal(g_cfg.events_max, 100000);
    static const char *bad[] = {"15", "0", "-1", "100001", "1e3", "lots", "", "01000", "1000 x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, "join = 127.0.0.1:7102\nevents_max = %s\n", bad[i]);
        memset(&g_cfg, 0x5A, sizeof g_cfg);
        assert_int_equal(load_text(node_text("", extra), &g_cfg, &err, &path), -1);
        assert_int_equal(g_cfg.events_max, 0x5A5A5A5A);
        char where[PATH_MAX + 16], got[64];
        snprintf(where, sizeof where, "%s:8:", path);
        snprintf(got, sizeof got, "got '%s'", bad[i]);
        expect_msg(&err, where, "key 'cluster.events_max'",
                   "a whole number of events from 16 to 100000 (default 1000)", got);
        assert_int_equal(err.n, 1);
    }
}

static void test_node_voter_nice(void **state)
{
    (void)state;
    us_errors err;
    const char *path;
    assert_int_equal(load_text(node_text("", "join = 127.0.0.1:7102\n"), &g_cfg, &err, NULL), 0);
    assert_int_equal(g_cfg.voter_nice, US_VOTER_NICE_DEFAULT);
    static const struct {
        const char *text;
        int nice;
    } good[] = {{"-20", -20}, {"0", 0}, {"-5", -5}, {"-0", 0}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, "voter_nice = %s\n", good[i].text);
        assert_int_equal(load_text(node_text(extra, "join = 127.0.0.1:7102\n"), &g_cfg, &err, NULL),
                         0);
        assert_int_equal(g_cfg.voter_nice, good[i].nice);
    }
    static const char *bad[] = {"-21", "1", "19", "high", "", "-", "--1", "-5 x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, "voter_nice = %s\n", bad[i]);
        memset(&g_cfg, 0x5A, sizeof g_cfg);
        assert_int_equal(
            load_text(node_text(extra, "join = 127.0.0.1:7102\n"), &g_cfg, &err, &path), -1);
        assert_int_equal(g_cfg.voter_nice, 0x5A5A5A5A);
        char where[PATH_MAX + 16], got[64];
        snprintf(where, sizeof where, "%s:5:", path);
        snprintf(got, sizeof got, "got '%s'", bad[i]);
        expect_msg(&err, where, "key 'node.voter_nice'", "a nice value from -20 to 0 (default -10)",
                   got);
        assert_int_equal(err.n, 1);
    }
}

static void test_node_service_host(void **state)
{
    (void)state;
    us_errors err;
    const char *path;
    assert_int_equal(load_text(node_text("", "join = 127.0.0.1:7102\n"), &g_cfg, &err, NULL), 0);
    assert_string_equal(g_cfg.service_host, "");
    static const char *good[] = {"db-1.example.org", "10.1.2.3", "fd00::1", "host_a"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, "service_host = %s\n", good[i]);
        assert_int_equal(load_text(node_text(extra, "join = 127.0.0.1:7102\n"), &g_cfg, &err, NULL),
                         0);
        assert_string_equal(g_cfg.service_host, good[i]);
    }
    static const char *bad[] = {
        "-x",    "a b", "a;b",
        "$(id)", "",    "a234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, "service_host = %s\n", bad[i]);
        memset(&g_cfg, 0x5A, sizeof g_cfg);
        assert_int_equal(
            load_text(node_text(extra, "join = 127.0.0.1:7102\n"), &g_cfg, &err, &path), -1);
        assert_int_equal((unsigned char)g_cfg.service_host[0], 0x5A);
        char where[PATH_MAX + 16], got[96];
        snprintf(where, sizeof where, "%s:5:", path);
        snprintf(got, sizeof got, "got '%s'", bad[i]);
        expect_msg(&err, where, "key 'node.service_host'", "a host name or IP address", got);
        assert_int_equal(err.n, 1);
    }
}

static void test_node_autopilot_grace(void **state)
{
    (void)state;
    us_errors err;
    const char *path;
    /* default */
    assert_int_equal(load_text(node_text("", "join = 127.0.0.1:7102\n"), &g_cfg, &err, NULL), 0);
    assert_int_equal(g_cfg.autopilot_grace_ms, 10000);
    /* set */
    int rc = load_text(node_text("", "join = 127.0.0.1:7102\nautopilot_grace = 1.5m   # slow\n"),
                       &g_cfg, &err, NULL);
    if (rc != 0)
        fprintf(stderr, "%s\n", joined(&err));
    assert_int_equal(rc, 0);
    assert_int_equal(g_cfg.autopilot_grace_ms, 90000);
    assert_int_equal(load_text(node_text("", "join = 127.0.0.1:7102\nautopilot_grace = 1\n"),
                               &g_cfg, &err, NULL),
                     0);
    assert_int_equal(g_cfg.autopilot_grace_ms, 1);

    /* bad values: one message each, naming file:line, key and expectation; output untouched */
    static const struct {
        const char *value, *expected;
    } bad[] = {
        {"0", "a duration greater than 0"},      {"0s", "a duration greater than 0"},
        {"-5s", "a duration greater than 0"},    {"soon", "a duration greater than 0"},
        {"10 s", "a duration greater than 0"},   {"", "a duration greater than 0"},
        {"1000h", "a duration of at most 596h"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, "join = 127.0.0.1:7102\nautopilot_grace = %s\n",
                 bad[i].value);
        memset(&g_cfg, 0x5A, sizeof g_cfg);
        assert_int_equal(load_text(node_text("", extra), &g_cfg, &err, &path), -1);
        assert_int_equal(g_cfg.autopilot_grace_ms, 0x5A5A5A5A);
        char where[PATH_MAX + 16], got[64];
        snprintf(where, sizeof where, "%s:8:", path);
        snprintf(got, sizeof got, "got '%s'", bad[i].value);
        expect_msg(&err, where, "key 'cluster.autopilot_grace'", bad[i].expected, got);
        assert_int_equal(err.n, 1);
    }
    /* listed among the known keys; duplicates rejected */
    assert_int_equal(
        load_text(node_text("", "join = 127.0.0.1:7102\nautopilot = 10s\n"), &g_cfg, &err, NULL),
        -1);
    expect_msg(&err, ":8:", "unknown key 'cluster.autopilot'", "autopilot_grace");
    assert_int_equal(load_text(node_text("", "join = 127.0.0.1:7102\nautopilot_grace = 10s\n"
                                             "autopilot_grace = 20s\n"),
                               &g_cfg, &err, NULL),
                     -1);
    expect_msg(&err, ":9:", "duplicate key 'cluster.autopilot_grace'", "first set on line 8");
    assert_int_equal(err.n, 1);
}

static void test_node_data_dir_errors(void **state)
{
    (void)state;
    write_file("a-file", "x\n");
    char text[8192];
    us_errors err;
    const char *path;
    /* below a regular file: cannot be created */
    snprintf(text, sizeof text,
             "[node]\nname = n1\naddress = 127.0.0.1:7101\ndata_dir = %s/a-file/sub\n"
             "[cluster]\nname = demo\njoin = 127.0.0.1:7102\n",
             g_dir);
    assert_int_equal(load_text(text, &g_cfg, &err, &path), -1);
    char where[PATH_MAX + 16];
    snprintf(where, sizeof where, "%s:4:", path);
    expect_msg(&err, where, "key 'node.data_dir'", "cannot create", strerror(ENOTDIR));
    assert_int_equal(err.n, 1);

    /* is a regular file */
    snprintf(text, sizeof text,
             "[node]\nname = n1\naddress = 127.0.0.1:7101\ndata_dir = %s/a-file\n"
             "[cluster]\nname = demo\njoin = 127.0.0.1:7102\n",
             g_dir);
    assert_int_equal(load_text(text, &g_cfg, &err, &path), -1);
    expect_msg(&err, where, "key 'node.data_dir'", "a-file", strerror(ENOTDIR));

    /* empty */
    snprintf(text, sizeof text,
             "[node]\nname = n1\naddress = 127.0.0.1:7101\ndata_dir =\n"
             "[cluster]\nname = demo\njoin = 127.0.0.1:7102\n");
    assert_int_equal(load_text(text, &g_cfg, &err, &path), -1);
    expect_msg(&err, where, "key 'node.data_dir'", "got ''");

    /* not writable: root bypasses permissions, so this part needs an ordinary user */
    if (geteuid() != 0) {
        char ro[PATH_MAX];
        snprintf(ro, sizeof ro, "%s/ro", g_dir);
        assert_int_equal(mkdir(ro, 0500), 0);
        snprintf(text, sizeof text,
                 "[node]\nname = n1\naddress = 127.0.0.1:7101\ndata_dir = %s\n"
                 "[cluster]\nname = demo\njoin = 127.0.0.1:7102\n",
                 ro);
        assert_int_equal(load_text(text, &g_cfg, &err, &path), -1);
        expect_msg(&err, where, "key 'node.data_dir'", "cannot write", strerror(EACCES));
        snprintf(text, sizeof text,
                 "[node]\nname = n1\naddress = 127.0.0.1:7101\ndata_dir = %s/sub\n"
                 "[cluster]\nname = demo\njoin = 127.0.0.1:7102\n",
                 ro);
        assert_int_equal(load_text(text, &g_cfg, &err, &path), -1);
        expect_msg(&err, where, "key 'node.data_dir'", "cannot create", strerror(EACCES));
        chmod(ro, 0700);
    }
}

static void test_node_syntax_errors(void **state)
{
    (void)state;
    us_errors err;
    const char *path;
    char text[8192];
    snprintf(text, sizeof text, "%s",
             node_text("just some words\n[oops\n", "join = 127.0.0.1:7102\n"));
    assert_int_equal(load_text(text, &g_cfg, &err, &path), -1);
    char where[PATH_MAX + 16];
    snprintf(where, sizeof where, "%s:5:", path);
    expect_msg(&err, where, "expected 'key = value'", "got 'just some words'");
    snprintf(where, sizeof where, "%s:6:", path);
    expect_msg(&err, where, "expected '[section]'", "got '[oops'");
    assert_int_equal(err.n, 2);
}

static void test_node_many_errors_out_untouched(void **state)
{
    (void)state;
    char text[8192];
    snprintf(text, sizeof text,
             "[node]\n"
             "name = Bad_Name\n"          /* 2 */
             "address = 1.2.3.4:0\n"      /* 3 */
             "data_dir = %s/ok\n"         /* 4 */
             "[cluster]\n"                /* 5 */
             "profile = slow # comment\n" /* 6 */
             "vip = 10.0.0.1\n",          /* 7 */
             g_dir);
    us_node_config *out = malloc(sizeof *out);
    us_node_config *copy = malloc(sizeof *copy);
    assert_non_null(out);
    assert_non_null(copy);
    memset(out, 0xAB, sizeof *out);
    memcpy(copy, out, sizeof *out);
    us_errors err;
    const char *path;
    assert_int_equal(load_text(text, out, &err, &path), -1);
    assert_memory_equal(out, copy, sizeof *out);
    expect_msg(&err, ":2:", "key 'node.name'", "got 'Bad_Name'");
    expect_msg(&err, ":3:", "key 'node.address'", "got '1.2.3.4:0'");
    expect_msg(&err, ":6:", "key 'cluster.profile'", "got 'slow'");
    expect_msg(&err, ":7:", "unknown key 'cluster.vip'");
    expect_msg(&err, "missing key 'cluster.name'");
    expect_msg(&err, "missing key 'cluster.members' or 'cluster.join'");
    assert_int_equal(err.n, 6);
    free(out);
    free(copy);
}

/* ---- services ---- */

/* g_set_owned (above) is what the last accepted parse allocated: tests scribble over g_set to
 * see that a refused parse leaves it alone. */
static us_service_set g_set;

static int parse_svc(const char *text, us_errors *err)
{
    memset(err, 0, sizeof *err);
    us_service_set before = g_set;
    int rc = us_config_parse_services(text, strlen(text), "svc.ini", &g_set, err);
    if (rc == 0 && g_set.svc != before.svc) {
        free(g_set_owned);
        g_set_owned = g_set.svc;
    }
    return rc;
}

static void test_services_valid(void **state)
{
    (void)state;
    const char *text = "# services\n"
                       "[service web]\n"
                       "run = /usr/bin/python3 -m http.server 8080   # the service\n"
                       "standby = hot\n"
                       "promote = /etc/understudy/promote.sh web\n"
                       "demote = echo demote ; sleep 1   # comment\n"
                       "standbys = 2\n"
                       "nodes = n2 n1  n3\n"
                       "hook_timeout = 1.5s\n"
                       "stop_timeout = 250ms\n"
                       "\n"
                       "[ service   db ]\r\n"
                       "run=postgres -D /var/lib/pg#data\r\n";
    us_errors err;
    int rc = parse_svc(text, &err);
    if (rc != 0)
        fprintf(stderr, "%s\n", joined(&err));
    assert_int_equal(rc, 0);
    assert_int_equal(g_set.n, 2);
    const us_service_def *w = &g_set.svc[0];
    assert_string_equal(w->name, "web");
    assert_string_equal(w->run, "/usr/bin/python3 -m http.server 8080");
    assert_int_equal(w->standby, US_STANDBY_HOT);
    assert_string_equal(w->promote, "/etc/understudy/promote.sh web");
    assert_string_equal(w->demote, "echo demote ; sleep 1");
    assert_int_equal(w->standbys, 2);
    assert_int_equal(w->n_nodes, 3);
    assert_string_equal(w->nodes[0], "n2");
    assert_string_equal(w->nodes[1], "n1");
    assert_string_equal(w->nodes[2], "n3");
    assert_int_equal(w->hook_timeout_ms, 1500);
    assert_int_equal(w->stop_timeout_ms, 250);
    const us_service_def *d = &g_set.svc[1];
    assert_string_equal(d->name, "db");
    assert_string_equal(d->run, "postgres -D /var/lib/pg#data"); /* '#' not after a space */
    assert_int_equal(d->standby, US_STANDBY_COLD);
    assert_string_equal(d->promote, "");
    assert_string_equal(d->demote, "");
    assert_int_equal(d->standbys, 1);
    assert_int_equal(d->n_nodes, 0);
    assert_int_equal(d->hook_timeout_ms, 10000);
    assert_int_equal(d->stop_timeout_ms, 5000);
}

static void test_services_empty(void **state)
{
    (void)state;
    us_errors err;
    memset(&g_set, 0x5A, sizeof g_set);
    assert_int_equal(parse_svc("", &err), 0);
    assert_int_equal(g_set.n, 0);
    assert_int_equal(parse_svc("# no services yet\n; none\n\n", &err), 0);
    assert_int_equal(g_set.n, 0);
    assert_int_equal(err.n, 0);
}

static void test_services_long_values(void **state)
{
    (void)state;
    static char text[8192];
    char cmd[US_CMD_MAX];
    memset(cmd, 'x', US_CMD_MAX - 1);
    cmd[US_CMD_MAX - 1] = '\0';
    memcpy(cmd, "echo ", 5);
    snprintf(text, sizeof text, "[service a]\nrun = %s\n", cmd);
    us_errors err;
    assert_int_equal(parse_svc(text, &err), 0); /* 1023 characters fit */
    assert_string_equal(g_set.svc[0].run, cmd);

    snprintf(text, sizeof text, "[service a]\nrun = %sy\npromote = %sz\ndemote = %sw\n", cmd, cmd,
             cmd);
    assert_int_equal(parse_svc(text, &err), -1);
    expect_msg(&err, "svc.ini:2:", "key 'run'", "[service a]", "at most 1023 characters",
               "US_CMD_MAX", "got 1024 characters");
    expect_msg(&err, "svc.ini:3:", "key 'promote'", "at most 1023 characters");
    expect_msg(&err, "svc.ini:4:", "key 'demote'", "at most 1023 characters");
    assert_int_equal(err.n, 3);
}

static void test_services_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *frags[5];
    } cases[] = {
        {"[node]\nname = n1\n", {"svc.ini:1:", "unknown section '[node]'", "[service NAME]"}},
        {"[service]\nrun = x\n", {"svc.ini:1:", "unknown section '[service]'"}},
        {"[service a b]\nrun = x\n", {"svc.ini:1:", "unknown section '[service a b]'"}},
        {"[service Web]\nrun = x\n", {"svc.ini:1:", "service name", "got 'Web'"}},
        {"[service a]\nrun = x\n[service a]\nrun = y\n",
         {"svc.ini:3:", "duplicate service 'a'", "first defined on line 1"}},
        {"run = x\n", {"svc.ini:1:", "key 'run'", "outside any [service NAME]"}},
        {"[service a]\nrun = x\nbogus = 10.0.0.5\n",
         {"svc.ini:3:", "unknown key 'bogus'", "[service a]",
          "known keys: run, standby, promote, demote, follow, follow_timeout, position, max_lag, "
          "synchronous, sync, "
          "standbys, nodes, "
          "hook_timeout, "
          "stop_timeout, vip, vip_announce_count, vip_announce_interval, vip_announce_repeat, "
          "proxy, backend_host, hold, drain, max_connections, max_connections_per_source, "
          "idle_timeout, check, check_interval, check_timeout, rise, fall, check_status, "}},
        {"[service a]\nrun = x\nVIP = 1\n", {"svc.ini:3:", "unknown key 'VIP'"}},
        {"[service a]\nrun = x\nfollow = /bin/true\n",
         {"svc.ini:3:", "key 'follow' in [service a]", "only meaningful with 'standby = hot'",
          "got standby = cold (the default)"}},
        {"[service a]\nrun = x\nstandby = cold\nfollow = /bin/true\n",
         {"svc.ini:4:", "key 'follow'", "got standby = cold (set so)"}},
        {"[service a]\nrun = x\nstandby = hot\nsync = /bin/true\nsynchronous = 2\n",
         {"svc.ini:5:", "key 'synchronous'",
          "expected at most 'standbys' (1, the default), got 2"}},
        {"[service a]\nrun = x\nsync = /bin/true\nsynchronous = 1\n",
         {"svc.ini:4:", "key 'synchronous'", "only meaningful with 'standby = hot'"}},
        {"[service a]\nrun = x\nstandby = hot\nsynchronous = 1\n",
         {"svc.ini:4:", "key 'synchronous'", "only meaningful with 'sync'"}},
        {"[service a]\nrun = x\nposition = echo 1\n",
         {"svc.ini:3:", "key 'position' in [service a]", "only meaningful with 'standby = hot'"}},
        {"[service a]\nrun = x\nstandby = hot\nmax_lag = 1M\n",
         {"svc.ini:4:", "key 'max_lag'", "only meaningful with 'position'"}},
        {"[service a]\nrun = x\nstandby = hot\nposition = echo 1\nmax_lag = -1\n",
         {"svc.ini:5:", "key 'max_lag'", "got '-1'"}},
        {"[service a]\nrun = x\nstandby = hot\nfollow_timeout = 5s\n",
         {"svc.ini:4:", "key 'follow_timeout'", "only meaningful with 'follow'"}},
        {"[service a]\nrun = x\ncheck_intervall = 1s\n",
         {"svc.ini:3:", "unknown key 'check_intervall' in [service a]",
          "(did you mean 'check_interval'? known keys: run, standby"}},
        {"[service a]\nrun = x\nFailback = yes\n",
         {"svc.ini:3:", "unknown key 'Failback'", "did you mean 'failback'?"}},
        {"[service a]\nrun = x\nwhatever = 1\n", {"svc.ini:3:", "(known keys: run, standby"}},
        {"[service a]\nrun = x\nchecks = tcp://127.0.0.1:80\n",
         {"svc.ini:3:", "unknown key 'checks'"}},
        {"[service a]\nrun = x\nrun = y\n",
         {"svc.ini:3:", "duplicate key 'run'", "first set on line 2"}},
        {"[service a]\nstandby = hot\n",
         {"svc.ini:1:", "[service a]", "missing key 'run'", "shell command"}},
        {"[service a]\nrun =   # nothing\n", {"svc.ini:2:", "key 'run'", "got ''"}},
        {"[service a]\nrun = x\nstandby = warm\n",
         {"svc.ini:3:", "key 'standby'", "'cold' or 'hot'", "got 'warm'"}},
        {"[service a]\nrun = x\nstandbys = 64\n",
         {"svc.ini:3:", "key 'standbys'", "0..63", "got '64'"}},
        {"[service a]\nrun = x\nstandbys = -1\n", {"svc.ini:3:", "key 'standbys'", "got '-1'"}},
        {"[service a]\nrun = x\nstandbys = two\n", {"svc.ini:3:", "key 'standbys'", "got 'two'"}},
        {"[service a]\nrun = x\nnodes = n1 N2\n",
         {"svc.ini:3:", "key 'nodes'", "node names", "got 'N2'"}},
        {"[service a]\nrun = x\nnodes = n1 n2 n1\n",
         {"svc.ini:3:", "key 'nodes'", "at most once", "got 'n1'"}},
        {"[service a]\nrun = x\nnodes = n1 n2 n3 n4 n5 n6 n7 n8 n9 n10 n11 n12 n13 n14 n15 n16 n17 "
         "n18 n19 n20 n21 n22 n23 n24 n25 n26 n27 n28 n29 n30 n31 n32 n33 n34 n35 n36 n37 n38 n39 "
         "n40 n41 n42 n43 n44 n45 n46 n47 n48 n49 n50 n51 n52 n53 n54 n55 n56 n57 n58 n59 n60 n61 "
         "n62 n63 n64 n65\n",
         {"svc.ini:3:", "key 'nodes'", "at most 64 nodes"}},
        {"[service a]\nrun = x\nhook_timeout = 0\n",
         {"svc.ini:3:", "key 'hook_timeout'", "duration greater than 0", "got '0'"}},
        {"[service a]\nrun = x\nhook_timeout = soon\n",
         {"svc.ini:3:", "key 'hook_timeout'", "got 'soon'"}},
        {"[service a]\nrun = x\nstop_timeout = 5 s\n",
         {"svc.ini:3:", "key 'stop_timeout'", "got '5 s'"}},
        {"[service a]\nrun = x\nstop_timeout = -5s\n",
         {"svc.ini:3:", "key 'stop_timeout'", "got '-5s'"}},
        {"[service a]\nrun = x\ngarbage line\n",
         {"svc.ini:3:", "expected 'key = value'", "got 'garbage line'"}},
        {"[service a]\nrun = x\n = y\n", {"svc.ini:3:", "expected a key before '='"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        us_errors err;
        memset(&g_set, 0x5A, sizeof g_set);
        if (parse_svc(cases[i].text, &err) != -1)
            fail_msg("case %zu accepted:\n%s", i, cases[i].text);
        assert_int_equal(g_set.n, 0x5A5A5A5A); /* untouched */
        for (int m = 0; m < err.n; m++) {
            bool all = true;
            for (int f = 0; f < 5 && cases[i].frags[f]; f++)
                if (!strstr(err.msg[m], cases[i].frags[f]))
                    all = false;
            if (all)
                goto found;
        }
        fail_msg("case %zu: no message has all fragments (first: %s); got:\n%s", i,
                 cases[i].frags[1], joined(&err));
    found:
        if (err.n != 1)
            fail_msg("case %zu: expected exactly one problem, got:\n%s", i, joined(&err));
    }
}

/* ---- least privilege and logs: user, group, env, log_max, log_keep ---- */

static void test_services_privilege_valid(void **state)
{
    (void)state;
    us_errors err;
    const char *text = "[service a]\n"
                       "run = x\n"
                       "user = www-data\n"
                       "group = _daemon.grp\n"
                       "env = A=1 B=\"two words\" 'C=it''s' D=\n" /* 5 */
                       "env = E=x=y F=\"a \\\"q\\\" \\\\ b\" G=$HOME # comment\n"
                       "log_max = 64K\n"
                       "log_keep = 0\n"
                       "[service b]\n"
                       "run = y\n"
                       "user = m$\n"
                       "log_max = 0\n"
                       "[service c]\n"
                       "run = z\n"
                       "log_max = 2G\n";
    int rc = parse_svc(text, &err);
    if (rc != 0)
        fail_msg("%s", joined(&err));
    const us_service_def *a = &g_set.svc[0];
    assert_string_equal(a->user, "www-data");
    assert_string_equal(a->group, "_daemon.grp");
    assert_int_equal(a->n_env, 7);
    assert_string_equal(a->env[0], "A=1");
    assert_string_equal(a->env[1], "B=two words");
    assert_string_equal(a->env[2], "C=its");
    assert_string_equal(a->env[3], "D=");
    assert_string_equal(a->env[4], "E=x=y");
    assert_string_equal(a->env[5], "F=a \"q\" \\ b");
    assert_string_equal(a->env[6], "G=$HOME"); /* no expansion */
    assert_int_equal(a->log_max, 64 * 1024);
    assert_int_equal(a->log_keep, 0);
    const us_service_def *b = &g_set.svc[1];
    assert_string_equal(b->user, "m$");
    assert_string_equal(b->group, "");
    assert_int_equal(b->n_env, 0);
    assert_int_equal(b->log_max, 0);
    assert_int_equal(b->log_keep, 3);
    assert_int_equal(g_set.svc[2].log_max, (int64_t)2 * 1024 * 1024 * 1024);
    assert_int_equal(g_set.svc[2].user[0], '\0');

    /* Defaults. */
    assert_int_equal(parse_svc("[service a]\nrun = x\n", &err), 0);
    assert_int_equal(g_set.svc[0].log_max, 10 * 1024 * 1024);
    assert_int_equal(g_set.svc[0].log_keep, 3);

    /* Sizes. */
    int64_t v;
    assert_true(us_parse_size("1", &v) && v == 1);
    assert_true(us_parse_size("10M", &v) && v == 10 * 1024 * 1024);
    assert_true(us_parse_size("3k", &v) && v == 3072);
    assert_true(us_parse_size("1024G", &v) && v == (int64_t)1 << 40);
    assert_false(us_parse_size("1025G", &v));
    assert_false(us_parse_size("", &v));
    assert_false(us_parse_size("M", &v));
    assert_false(us_parse_size("10 M", &v));
    assert_false(us_parse_size("10MB", &v));
    assert_false(us_parse_size("-1", &v));
    assert_false(us_parse_size("1.5M", &v));

    /* Names. */
    assert_true(us_account_name_valid("nobody"));
    assert_true(us_account_name_valid("_x"));
    assert_true(us_account_name_valid("a.b-c_d"));
    assert_false(us_account_name_valid(""));
    assert_false(us_account_name_valid("1000"));
    assert_false(us_account_name_valid("-x"));
    assert_false(us_account_name_valid("a b"));
    assert_false(us_account_name_valid("a:b"));
    assert_false(us_account_name_valid("a/b"));
    assert_false(us_account_name_valid("a$b"));
    assert_false(us_account_name_valid("abcdefghijabcdefghijabcdefghijabc")); /* 33 */
    assert_true(us_account_name_valid("abcdefghijabcdefghijabcdefghijab"));   /* 32 */
}

static void test_services_privilege_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *frags[5];
    } cases[] = {
        {"[service a]\nrun = x\nuser = 1000\n",
         {"svc.ini:3:", "key 'user' in [service a]", "expected a name of 1..32 characters",
          "got '1000'"}},
        {"[service a]\nrun = x\nuser = bad name\n", {"svc.ini:3:", "key 'user'", "got 'bad name'"}},
        {"[service a]\nrun = x\nuser = \n", {"svc.ini:3:", "key 'user'", "got ''"}},
        {"[service a]\nrun = x\ngroup = -wheel\n", {"svc.ini:3:", "key 'group'", "got '-wheel'"}},
        {"[service a]\nrun = x\nuser = a\nuser = b\n",
         {"svc.ini:4:", "duplicate key 'user'", "first set on line 3"}},
        {"[service a]\nrun = x\nenv = 1A=x\n",
         {"svc.ini:3:", "key 'env'", "KEY of [A-Za-z_][A-Za-z0-9_]*", "got '1A=x'"}},
        {"[service a]\nrun = x\nenv = NOVALUE\n", {"svc.ini:3:", "key 'env'", "got 'NOVALUE'"}},
        {"[service a]\nrun = x\nenv = =x\n", {"svc.ini:3:", "key 'env'", "got '=x'"}},
        {"[service a]\nrun = x\nenv = A-B=x\n", {"svc.ini:3:", "key 'env'", "got 'A-B=x'"}},
        {"[service a]\nrun = x\nenv = A=\"open\n",
         {"svc.ini:3:", "key 'env'", "closed quotes", "got 'A=\"open'"}},
        {"[service a]\nrun = x\nenv =\n", {"svc.ini:3:", "key 'env'", "one or more KEY=VALUE"}},
        {"[service a]\nrun = x\nenv = UNDERSTUDY_ROLE=x\n",
         {"svc.ini:3:", "key 'env'", "set by the agent", "got 'UNDERSTUDY_ROLE=x'"}},
        {"[service a]\nrun = x\nenv = A=1\nenv = B=2 A=3\n",
         {"svc.ini:4:", "key 'env'", "at most once", "got 'A=3'", "first set on line 3"}},
        {"[service a]\nrun = x\nenv = A=1 B=2 C=3 D=4 E=5 F=6 G=7 H=8\n"
         "env = I=1 J=2 K=3 L=4 M=5 N=6 O=7 P=8 Q=9 R=10\n",
         {"svc.ini:4:", "key 'env'", "at most 16 assignments (US_MAX_ENV)", "got 'Q=9'"}},
        {"[service a]\nrun = x\nlog_max = 10MB\n",
         {"svc.ini:3:", "key 'log_max'", "K, M or G suffix", "got '10MB'"}},
        {"[service a]\nrun = x\nlog_max = -1\n", {"svc.ini:3:", "key 'log_max'", "got '-1'"}},
        {"[service a]\nrun = x\nlog_max = 2000G\n",
         {"svc.ini:3:", "key 'log_max'", "at most 1024G", "got '2000G'"}},
        {"[service a]\nrun = x\nlog_keep = 101\n",
         {"svc.ini:3:", "key 'log_keep'", "0..100", "got '101'"}},
        {"[service a]\nrun = x\nlog_kep = 1\n",
         {"svc.ini:3:", "unknown key 'log_kep'", "did you mean 'log_keep'?"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        us_errors err;
        memset(&g_set, 0x5A, sizeof g_set);
        if (parse_svc(cases[i].text, &err) != -1)
            fail_msg("case %zu accepted:\n%s", i, cases[i].text);
        assert_int_equal(g_set.n, 0x5A5A5A5A); /* untouched */
        for (int m = 0; m < err.n; m++) {
            bool all = true;
            for (int f = 0; f < 5 && cases[i].frags[f]; f++)
                if (!strstr(err.msg[m], cases[i].frags[f]))
                    all = false;
            if (all)
                goto found;
        }
        fail_msg("case %zu: no message has all fragments (first: %s); got:\n%s", i,
                 cases[i].frags[1], joined(&err));
    found:
        if (err.n != 1)
            fail_msg("case %zu: expected exactly one problem, got:\n%s", i, joined(&err));
    }
}

/* The whole list of known keys fits in one message. */
static void test_services_unknown_key_list(void **state)
{
    (void)state;
    static const char full[] =
        "svc.ini:3: unknown key 'bogus' in [service a] (known keys: run, standby, promote, demote, "
        "follow, follow_timeout, position, max_lag, synchronous, sync, "
        "standbys, nodes, hook_timeout, stop_timeout, vip, vip_announce_count, "
        "vip_announce_interval, vip_announce_repeat, proxy, backend_host, hold, drain, "
        "max_connections, max_connections_per_source, idle_timeout, check, check_interval, "
        "check_timeout, rise, fall, check_status, check_grace, on_failure, restart_backoff, "
        "max_restarts, restart_window, "
        "failure_threshold, failure_window, failure_cooldown, min_failover_interval, failback, "
        "notify, notify_timeout, user, group, env, log_max, log_keep)";
    us_errors err;
    assert_int_equal(parse_svc("[service a]\nrun = x\nbogus = 1\n", &err), -1);
    assert_int_equal(err.n, 1);
    assert_true(sizeof full <= US_ERROR_LEN);
    assert_string_equal(err.msg[0], full);
}

static void test_services_too_many(void **state)
{
    (void)state;
    static char text[65536];
    size_t used = 0;
    for (int i = 0; i < US_MAX_SERVICES + 2; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "[service s%d]\nrun = x\n", i);
    us_errors err;
    assert_int_equal(parse_svc(text, &err), -1);
    char where[32];
    snprintf(where, sizeof where, "svc.ini:%d:", 2 * US_MAX_SERVICES + 1);
    expect_msg(&err, where, "at most 1000 services", "US_MAX_SERVICES");
    assert_int_equal(err.n, 1); /* reported once */

    /* exactly the limit is fine */
    used = 0;
    for (int i = 0; i < US_MAX_SERVICES; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "[service s%d]\nrun = x\n", i);
    assert_int_equal(parse_svc(text, &err), 0);
    assert_int_equal(g_set.n, US_MAX_SERVICES);
    assert_string_equal(g_set.svc[31].name, "s31");
}

static void test_services_many_errors_out_untouched(void **state)
{
    (void)state;
    const char *text = "[service web]\n"      /* 1 */
                       "run = ./web\n"        /* 2 */
                       "standby = tepid\n"    /* 3 */
                       "bogus = 10.0.0.9\n"   /* 4 */
                       "[service bad_name]\n" /* 5 */
                       "run = x\n"            /* 6 */
                       "standbys = 99\n"      /* 7: still checked under a bad name */
                       "[service db]\n"       /* 8: no run */
                       "nodes = n1 n1\n";     /* 9 */
    memset(&g_set, 0x33, sizeof g_set);
    us_service_set *copy = malloc(sizeof *copy);
    assert_non_null(copy);
    memcpy(copy, &g_set, sizeof g_set);
    us_errors err;
    assert_int_equal(parse_svc(text, &err), -1);
    assert_memory_equal(&g_set, copy, sizeof g_set);
    free(copy);
    expect_msg(&err, "svc.ini:3:", "key 'standby' in [service web]", "got 'tepid'");
    expect_msg(&err, "svc.ini:4:", "unknown key 'bogus'");
    expect_msg(&err, "svc.ini:5:", "got 'bad_name'");
    expect_msg(&err, "svc.ini:7:", "key 'standbys' in [service bad_name]", "got '99'");
    expect_msg(&err, "svc.ini:8:", "[service db]", "missing key 'run'");
    expect_msg(&err, "svc.ini:9:", "key 'nodes'", "got 'n1'");
    assert_int_equal(err.n, 6);
    /* one message per line, in file order */
    const char *j = joined(&err);
    assert_non_null(strstr(j, "svc.ini:3:"));
    assert_true(strstr(j, "svc.ini:3:") < strstr(j, "svc.ini:9:"));
    assert_int_equal(err.dropped, 0);
}

/* ---- services: virtual IPs and the proxy ---- */

static void test_services_vip_proxy_valid(void **state)
{
    (void)state;
    const char *text =
        "[service web]\n"
        "run = ./web\n"
        "vip = 198.18.0.100/24 dev eth0        # IPv4\n"
        "vip =   2001:DB8::10/64   dev  br-lan0 ,198.18.1.7/32 dev eth1   # IPv6, list\n"
        "vip_announce_count = 5\n"
        "vip_announce_interval = 20ms\n"
        "vip_announce_repeat = 0\n"
        "proxy = 0.0.0.0:8000 -> 8080\n"
        "backend_host = 198.18.0.5\n"
        "hold = 0s\n"
        "drain = 1.5s\n"
        "max_connections = 100\n"
        "max_connections_per_source = 7\n"
        "idle_timeout = 90s\n"
        "vip = 10.1.2.3/0 dev abcdefghijklmno\n"
        "[service db]\n"
        "run = ./db\n"
        "proxy = 127.0.0.1:5432->15432\n"
        "vip = ::ffff:198.18.0.9/128 dev lo\n"
        "hold = 0\n"
        "drain = 0ms\n"
        "vip_announce_repeat = 10s\n"
        "[service cache]\n"
        "run = ./cache\n"
        "proxy = 198.18.0.1:5432 -> 1\n" /* same port as db, other address: no overlap */
        "[service mq]\n"
        "run = ./mq\n"
        "proxy = 127.0.0.1:8001 -> 65535\n";
    us_errors err;
    int rc = parse_svc(text, &err);
    if (rc != 0)
        fprintf(stderr, "%s\n", joined(&err));
    assert_int_equal(rc, 0);
    assert_int_equal(g_set.n, 4);

    const us_service_def *w = &g_set.svc[0];
    assert_int_equal(w->n_vips, 4);
    static const uint8_t v4a[4] = {198, 18, 0, 100};
    assert_int_equal(w->vips[0].family, AF_INET);
    assert_memory_equal(w->vips[0].addr, v4a, 4);
    assert_int_equal(w->vips[0].prefix, 24);
    assert_string_equal(w->vips[0].dev, "eth0");
    assert_string_equal(w->vips[0].text, "198.18.0.100/24 dev eth0");
    static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x10};
    assert_int_equal(w->vips[1].family, AF_INET6);
    assert_memory_equal(w->vips[1].addr, v6, 16);
    assert_int_equal(w->vips[1].prefix, 64);
    assert_string_equal(w->vips[1].dev, "br-lan0");
    assert_string_equal(w->vips[1].text, "2001:DB8::10/64 dev br-lan0"); /* spaces trimmed */
    assert_int_equal(w->vips[2].family, AF_INET);
    assert_int_equal(w->vips[2].prefix, 32);
    assert_string_equal(w->vips[2].dev, "eth1");
    assert_string_equal(w->vips[2].text, "198.18.1.7/32 dev eth1");
    assert_int_equal(w->vips[3].prefix, 0);
    assert_string_equal(w->vips[3].dev, "abcdefghijklmno"); /* 15 characters fit */
    static const uint8_t zero12[12];
    assert_memory_equal(w->vips[3].addr + 4, zero12, 12); /* IPv4 uses 4 bytes, rest zero */
    assert_int_equal(w->announce_count, 5);
    assert_int_equal(w->announce_interval_ms, 20);
    assert_int_equal(w->announce_repeat_ms, 0);
    assert_string_equal(w->proxy_listen, "0.0.0.0:8000");
    assert_int_equal(w->proxy_port, 8080);
    assert_string_equal(w->backend_host, "198.18.0.5");
    assert_int_equal(w->hold_ms, 0);
    assert_int_equal(w->drain_ms, 1500);
    assert_int_equal(w->max_conns, 100);
    assert_int_equal(w->max_per_source, 7);
    assert_int_equal(w->idle_ms, 90000);

    const us_service_def *d = &g_set.svc[1];
    assert_int_equal(d->n_vips, 1);
    assert_int_equal(d->vips[0].family, AF_INET6);
    assert_int_equal(d->vips[0].prefix, 128);
    assert_string_equal(d->vips[0].dev, "lo");
    assert_string_equal(d->proxy_listen, "127.0.0.1:5432");
    assert_int_equal(d->proxy_port, 15432);
    assert_string_equal(d->backend_host, "");
    assert_int_equal(d->hold_ms, 0);
    assert_int_equal(d->drain_ms, 0);
    assert_int_equal(d->max_conns, 4096);
    assert_int_equal(d->max_per_source, 256);
    assert_int_equal(d->idle_ms, 3600000);
    assert_int_equal(d->announce_count, 3);
    assert_int_equal(d->announce_interval_ms, 100);
    assert_int_equal(d->announce_repeat_ms, 10000);

    assert_string_equal(g_set.svc[2].proxy_listen, "198.18.0.1:5432");
    assert_int_equal(g_set.svc[2].proxy_port, 1);
    assert_int_equal(g_set.svc[2].n_vips, 0);
    assert_string_equal(g_set.svc[3].proxy_listen, "127.0.0.1:8001");
    assert_int_equal(g_set.svc[3].proxy_port, 65535);
}

static void test_services_vip_proxy_defaults(void **state)
{
    (void)state;
    us_errors err;
    memset(&g_set, 0x5A, sizeof g_set);
    assert_int_equal(parse_svc("[service a]\nrun = x\n"
                               "[service b]\nrun = y\nvip = 198.18.0.100/24 dev eth0\n"
                               "[service c]\nrun = z\nproxy = 0.0.0.0:80 -> 8080\n",
                               &err),
                     0);
    assert_int_equal(g_set.n, 3);
    for (int i = 0; i < 3; i++) {
        const us_service_def *d = &g_set.svc[i];
        assert_int_equal(d->n_vips, i == 1 ? 1 : 0);
        assert_int_equal(d->announce_count, 3);
        assert_int_equal(d->announce_interval_ms, 100);
        assert_int_equal(d->announce_repeat_ms, 3000);
        assert_string_equal(d->proxy_listen, i == 2 ? "0.0.0.0:80" : "");
        assert_int_equal(d->proxy_port, i == 2 ? 8080 : 0);
        assert_string_equal(d->backend_host, "");
        assert_int_equal(d->hold_ms, 5000);
        assert_int_equal(d->drain_ms, 10000);
        assert_int_equal(d->max_conns, 4096);
    }
}

static void test_services_vip_limits(void **state)
{
    (void)state;
    us_errors err;
    /* US_MAX_VIPS over several lines and a list */
    assert_int_equal(parse_svc("[service a]\nrun = x\n"
                               "vip = 198.18.0.1/24 dev eth0, 198.18.0.2/24 dev eth0\n"
                               "vip = 2001:db8::1/64 dev eth0\n"
                               "vip = 2001:db8::2/64 dev eth1\n",
                               &err),
                     0);
    assert_int_equal(g_set.svc[0].n_vips, US_MAX_VIPS);
    assert_string_equal(g_set.svc[0].vips[3].text, "2001:db8::2/64 dev eth1");

    /* one more: reported once, on the line where the limit was passed */
    assert_int_equal(parse_svc("[service a]\nrun = x\n"
                               "vip = 198.18.0.1/24 dev eth0, 198.18.0.2/24 dev eth0\n"
                               "vip = 198.18.0.3/24 dev eth0, 198.18.0.4/24 dev eth0\n"
                               "vip = 198.18.0.5/24 dev eth0, 198.18.0.6/24 dev eth0\n",
                               &err),
                     -1);
    expect_msg(&err, "svc.ini:5:", "key 'vip' in [service a]", "at most 4 VIPs", "US_MAX_VIPS",
               "got '198.18.0.5/24 dev eth0'");
    assert_int_equal(err.n, 1);

    /* the limit is per service */
    static char text[4096];
    size_t used = 0;
    for (int s = 0; s < 3; s++) {
        used += (size_t)snprintf(text + used, sizeof text - used, "[service s%d]\nrun = x\n", s);
        for (int v = 0; v < US_MAX_VIPS; v++)
            used += (size_t)snprintf(text + used, sizeof text - used,
                                     "vip = 198.18.%d.%d/24 dev eth0\n", s, v + 1);
    }
    assert_int_equal(parse_svc(text, &err), 0);
    assert_int_equal(g_set.n, 3);
    for (int s = 0; s < 3; s++)
        assert_int_equal(g_set.svc[s].n_vips, US_MAX_VIPS);

    /* integer bounds */
    assert_int_equal(parse_svc("[service a]\nrun = x\nvip = 198.18.0.1/24 dev eth0\n"
                               "vip_announce_count = 1\nproxy = 0.0.0.0:1 -> 1\n"
                               "max_connections = 1\n"
                               "[service b]\nrun = x\nvip = 198.18.0.2/24 dev eth0\n"
                               "vip_announce_count = 100\nproxy = 0.0.0.0:2 -> 2\n"
                               "max_connections = 1000000\nvip_announce_interval = 1\n",
                               &err),
                     0);
    assert_int_equal(g_set.svc[0].announce_count, 1);
    assert_int_equal(g_set.svc[0].max_conns, 1);
    assert_int_equal(g_set.svc[1].announce_count, 100);
    assert_int_equal(g_set.svc[1].max_conns, 1000000);
    assert_int_equal(g_set.svc[1].announce_interval_ms, 1);
}

/* Each case must be rejected with exactly one message holding every fragment, output untouched. */
typedef struct err_case {
    const char *text;
    const char *frags[6];
} err_case;

static void check_error_cases(const err_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        us_errors err;
        memset(&g_set, 0x5A, sizeof g_set);
        if (parse_svc(cases[i].text, &err) != -1)
            fail_msg("case %zu accepted:\n%s", i, cases[i].text);
        assert_int_equal(g_set.n, 0x5A5A5A5A); /* untouched */
        bool found = false;
        for (int m = 0; m < err.n && !found; m++) {
            bool all = true;
            for (int f = 0; f < 6 && cases[i].frags[f]; f++)
                if (!strstr(err.msg[m], cases[i].frags[f]))
                    all = false;
            found = all;
        }
        if (!found)
            fail_msg("case %zu: no message has all fragments (second: %s); got:\n%s", i,
                     cases[i].frags[1], joined(&err));
        if (err.n != 1)
            fail_msg("case %zu: expected exactly one problem, got:\n%s", i, joined(&err));
    }
}

#define SVC_A "[service a]\nrun = x\n"
#define VIP_A SVC_A "vip = 198.18.0.100/24 dev eth0\n"
#define PROXY_A SVC_A "proxy = 0.0.0.0:8000 -> 8080\n"

static void test_services_vip_errors(void **state)
{
    (void)state;
    static const err_case cases[] = {
        /* address */
        {SVC_A "vip = 300.1.1.1/24 dev eth0\n",
         {"svc.ini:3:", "key 'vip' in [service a]", "'300.1.1.1' is not an IPv4 or IPv6 address",
          "got '300.1.1.1/24 dev eth0'"}},
        {SVC_A "vip = 01.2.3.4/24 dev eth0\n", {"svc.ini:3:", "key 'vip'", "not an IPv4 or IPv6"}},
        {SVC_A "vip = eth0/24 dev eth0\n", {"svc.ini:3:", "key 'vip'", "'eth0' is not an IPv4"}},
        {SVC_A "vip = 2001:db8::zz/64 dev eth0\n",
         {"svc.ini:3:", "key 'vip'", "'2001:db8::zz' is not an IPv4 or IPv6 address"}},
        {SVC_A "vip = fe80::1%eth0/64 dev eth0\n", {"svc.ini:3:", "key 'vip'", "not an IPv4"}},
        {SVC_A "vip = 0.0.0.0/0 dev eth0\n",
         {"svc.ini:3:", "key 'vip'", "unspecified address", "cannot be a VIP"}},
        {SVC_A "vip = ::/0 dev eth0\n", {"svc.ini:3:", "key 'vip'", "unspecified address"}},
        {SVC_A "vip = 224.0.0.18/32 dev eth0\n", {"svc.ini:3:", "key 'vip'", "multicast"}},
        {SVC_A "vip = ff02::1/128 dev eth0\n", {"svc.ini:3:", "key 'vip'", "multicast"}},
        {SVC_A "vip = 255.255.255.255/32 dev eth0\n", {"svc.ini:3:", "key 'vip'", "broadcast"}},
        /* prefix */
        {SVC_A "vip = 198.18.0.100 dev eth0\n",
         {"svc.ini:3:", "key 'vip' in [service a]", "missing '/PREFIX'", "ADDR/PREFIX dev IFNAME",
          "got '198.18.0.100 dev eth0'"}},
        {SVC_A "vip = 198.18.0.100/33 dev eth0\n",
         {"svc.ini:3:", "key 'vip' in [service a]", "prefix 33 is out of range for IPv4 (0..32)",
          "got '198.18.0.100/33 dev eth0'"}},
        {SVC_A "vip = 2001:db8::10/129 dev eth0\n",
         {"svc.ini:3:", "key 'vip'", "prefix 129 is out of range for IPv6 (0..128)"}},
        {SVC_A "vip = 198.18.0.100/ dev eth0\n",
         {"svc.ini:3:", "key 'vip'", "'/' is not a prefix length", "0..32"}},
        {SVC_A "vip = 198.18.0.100/-1 dev eth0\n",
         {"svc.ini:3:", "key 'vip'", "'/-1' is not a prefix length"}},
        {SVC_A "vip = 198.18.0.100/024 dev eth0\n", {"svc.ini:3:", "key 'vip'", "'/024'"}},
        {SVC_A "vip = 2001:db8::10/1000 dev eth0\n",
         {"svc.ini:3:", "key 'vip'", "'/1000' is not a prefix length", "0..128"}},
        {SVC_A "vip = 198.18.0.100/24x dev eth0\n", {"svc.ini:3:", "key 'vip'", "'/24x'"}},
        /* device */
        {SVC_A "vip = 198.18.0.100/24\n",
         {"svc.ini:3:", "key 'vip' in [service a]", "missing 'dev IFNAME'",
          "got '198.18.0.100/24'"}},
        {SVC_A "vip = 198.18.0.100/24 eth0\n",
         {"svc.ini:3:", "key 'vip'", "found 'eth0' where 'dev IFNAME' was expected"}},
        {SVC_A "vip = 198.18.0.100/24 dev\n",
         {"svc.ini:3:", "key 'vip'", "missing the interface name after 'dev'"}},
        {SVC_A "vip = 198.18.0.100/24 dev abcdefghijklmnop\n",
         {"svc.ini:3:", "key 'vip'",
          "interface name 'abcdefghijklmnop' is longer than 15 characters"}},
        {SVC_A "vip = 198.18.0.100/24 dev eth0:1\n",
         {"svc.ini:3:", "key 'vip'", "interface name 'eth0:1' is not valid"}},
        {SVC_A "vip = 198.18.0.100/24 dev a/b\n",
         {"svc.ini:3:", "key 'vip'", "'a/b' is not valid"}},
        {SVC_A "vip = 198.18.0.100/24 dev ..\n", {"svc.ini:3:", "key 'vip'", "'..' is not valid"}},
        {SVC_A "vip = 198.18.0.100/24 dev eth0 198.18.0.101/24 dev eth0\n",
         {"svc.ini:3:", "key 'vip'", "unexpected '198.18.0.101/24' after the interface name",
          "separate several with ','"}},
        /* lists and repetition */
        {SVC_A "vip =\n",
         {"svc.ini:3:", "key 'vip' in [service a]", "ADDR/PREFIX dev IFNAME", "got ''"}},
        {SVC_A "vip = 198.18.0.100/24 dev eth0,\n",
         {"svc.ini:3:", "key 'vip'", "empty entry", "got '198.18.0.100/24 dev eth0,'"}},
        {SVC_A "vip = , 198.18.0.100/24 dev eth0\n", {"svc.ini:3:", "key 'vip'", "empty entry"}},
        {SVC_A "vip = 198.18.0.100/24 dev eth0, 198.18.0.100/32 dev eth1\n",
         {"svc.ini:3:", "key 'vip' in [service a]",
          "duplicate VIP address 198.18.0.100 (already listed on line 3)",
          "got '198.18.0.100/32 dev eth1'"}},
        {SVC_A "vip = 2001:db8::10/64 dev eth0\nstandby = hot\nvip = 2001:DB8:0::10/64 dev eth0\n",
         {"svc.ini:5:", "key 'vip'", "duplicate VIP address 2001:db8::10",
          "already listed on line 3"}},
        {VIP_A "[service b]\nrun = y\nvip = 198.18.0.7/24 dev eth0, 198.18.0.100/24 dev eth1\n",
         {"svc.ini:6:", "key 'vip' in [service b]",
          "VIP address 198.18.0.100 is already used by [service a] (line 3)"}},
        /* announcements */
        {VIP_A "vip_announce_count = 0\n",
         {"svc.ini:4:", "key 'vip_announce_count' in [service a]", "an integer 1..100", "got '0'"}},
        {VIP_A "vip_announce_count = 101\n",
         {"svc.ini:4:", "key 'vip_announce_count'", "1..100", "got '101'"}},
        {VIP_A "vip_announce_count = three\n",
         {"svc.ini:4:", "key 'vip_announce_count'", "got 'three'"}},
        {VIP_A "vip_announce_count = -3\n", {"svc.ini:4:", "key 'vip_announce_count'", "got '-3'"}},
        {VIP_A "vip_announce_interval = 0\n",
         {"svc.ini:4:", "key 'vip_announce_interval'", "duration greater than 0", "got '0'"}},
        {VIP_A "vip_announce_interval = fast\n",
         {"svc.ini:4:", "key 'vip_announce_interval'", "got 'fast'"}},
        {VIP_A "vip_announce_repeat = -1s\n",
         {"svc.ini:4:", "key 'vip_announce_repeat'", "duration >= 0", "got '-1s'"}},
        {VIP_A "vip_announce_repeat = 3 s\n",
         {"svc.ini:4:", "key 'vip_announce_repeat'", "got '3 s'"}},
        {VIP_A "vip_announce_count = 2\nvip_announce_count = 4\n",
         {"svc.ini:5:", "duplicate key 'vip_announce_count'", "first set on line 4"}},
        /* announcement keys need a vip (a bad vip line still counts: reported once, not twice) */
        {SVC_A "vip_announce_count = 5\n",
         {"svc.ini:3:", "key 'vip_announce_count' in [service a]", "only meaningful with 'vip'"}},
        {SVC_A "vip_announce_interval = 50ms\n",
         {"svc.ini:3:", "key 'vip_announce_interval'", "only meaningful with 'vip'"}},
        {SVC_A "vip_announce_repeat = 0\n",
         {"svc.ini:3:", "key 'vip_announce_repeat'", "only meaningful with 'vip'"}},
        {SVC_A "vip = 198.18.0.1/40 dev eth0\nvip_announce_count = 5\n",
         {"svc.ini:3:", "key 'vip'", "prefix 40"}},
        {VIP_A "[service b]\nrun = y\nvip_announce_count = 5\n",
         {"svc.ini:6:", "[service b]", "only meaningful with 'vip'"}},
    };
    check_error_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_services_proxy_errors(void **state)
{
    (void)state;
    static const err_case cases[] = {
        {SVC_A "proxy = 0.0.0.0:8000 8080\n",
         {"svc.ini:3:", "key 'proxy' in [service a]", "'LISTEN -> PORT'", "missing '->'",
          "got '0.0.0.0:8000 8080'"}},
        {SVC_A "proxy = 0.0.0.0:8000 => 8080\n", {"svc.ini:3:", "key 'proxy'", "missing '->'"}},
        {SVC_A "proxy =\n", {"svc.ini:3:", "key 'proxy'", "missing '->'", "got ''"}},
        {SVC_A "proxy = 0.0.0.0 -> 8080\n",
         {"svc.ini:3:", "key 'proxy' in [service a]", "listen address before '->'", "IPv4:port",
          "got '0.0.0.0 -> 8080'"}},
        {SVC_A "proxy = localhost:8000 -> 8080\n", {"svc.ini:3:", "key 'proxy'", "listen address"}},
        {SVC_A "proxy = 0.0.0.0:0 -> 8080\n", {"svc.ini:3:", "key 'proxy'", "listen address"}},
        {SVC_A "proxy = [::]:8000 -> 8080\n", {"svc.ini:3:", "key 'proxy'", "listen address"}},
        {SVC_A "proxy = -> 8080\n", {"svc.ini:3:", "key 'proxy'", "listen address"}},
        {SVC_A "proxy = 0.0.0.0:8000 -> 0\n",
         {"svc.ini:3:", "key 'proxy' in [service a]", "backend port 1..65535 after '->'",
          "got '0.0.0.0:8000 -> 0'"}},
        {SVC_A "proxy = 0.0.0.0:8000 -> 65536\n", {"svc.ini:3:", "key 'proxy'", "backend port"}},
        {SVC_A "proxy = 0.0.0.0:8000 -> http\n", {"svc.ini:3:", "key 'proxy'", "backend port"}},
        {SVC_A "proxy = 0.0.0.0:8000 ->\n", {"svc.ini:3:", "key 'proxy'", "backend port"}},
        {SVC_A "proxy = 0.0.0.0:8000 -> 10.0.0.1:8080\n",
         {"svc.ini:3:", "key 'proxy'", "backend port"}},
        {SVC_A "proxy = 0.0.0.0:8000 -> 8080 -> 9090\n",
         {"svc.ini:3:", "key 'proxy'", "backend port"}},
        {PROXY_A "proxy = 0.0.0.0:8001 -> 8080\n",
         {"svc.ini:4:", "duplicate key 'proxy'", "first set on line 3"}},
        /* backend_host */
        {PROXY_A "backend_host = localhost\n",
         {"svc.ini:4:", "key 'backend_host' in [service a]", "an IPv4 address", "got 'localhost'"}},
        {PROXY_A "backend_host = 198.18.0.5:80\n",
         {"svc.ini:4:", "key 'backend_host'", "got '198.18.0.5:80'"}},
        {PROXY_A "backend_host = 0.0.0.0\n",
         {"svc.ini:4:", "key 'backend_host'", "not 0.0.0.0", "got '0.0.0.0'"}},
        {PROXY_A "backend_host = 198.018.0.5\n", {"svc.ini:4:", "key 'backend_host'"}},
        {PROXY_A "backend_host =\n", {"svc.ini:4:", "key 'backend_host'", "got ''"}},
        /* hold, drain, max_connections */
        {PROXY_A "hold = -1s\n",
         {"svc.ini:4:", "key 'hold' in [service a]", "duration >= 0", "got '-1s'"}},
        {PROXY_A "hold = forever\n", {"svc.ini:4:", "key 'hold'", "got 'forever'"}},
        {PROXY_A "drain = 10 s\n", {"svc.ini:4:", "key 'drain'", "duration >= 0", "got '10 s'"}},
        {PROXY_A "drain = 1.5ms\n", {"svc.ini:4:", "key 'drain'", "got '1.5ms'"}},
        {PROXY_A "max_connections = 0\n",
         {"svc.ini:4:", "key 'max_connections' in [service a]", "an integer 1..1000000",
          "got '0'"}},
        {PROXY_A "max_connections = 1000001\n",
         {"svc.ini:4:", "key 'max_connections'", "got '1000001'"}},
        {PROXY_A "max_connections = 4k\n", {"svc.ini:4:", "key 'max_connections'", "got '4k'"}},
        {PROXY_A "hold = 1s\nhold = 2s\n",
         {"svc.ini:5:", "duplicate key 'hold'", "first set on line 4"}},
        /* proxy keys need a proxy (a bad proxy line still counts) */
        {SVC_A "backend_host = 198.18.0.5\n",
         {"svc.ini:3:", "key 'backend_host' in [service a]", "only meaningful with 'proxy'"}},
        {SVC_A "hold = 5s\n", {"svc.ini:3:", "key 'hold'", "only meaningful with 'proxy'"}},
        {SVC_A "drain = 0\n", {"svc.ini:3:", "key 'drain'", "only meaningful with 'proxy'"}},
        {SVC_A "max_connections = 10\n",
         {"svc.ini:3:", "key 'max_connections'", "only meaningful with 'proxy'"}},
        {VIP_A "hold = 5s\n", {"svc.ini:4:", "key 'hold'", "only meaningful with 'proxy'"}},
        {SVC_A "proxy = 0.0.0.0:8000 -> 0\nhold = 1s\n", {"svc.ini:3:", "key 'proxy'"}},
        /* listeners of two services */
        {PROXY_A "[service b]\nrun = y\nproxy = 0.0.0.0:8000 -> 9090\n",
         {"svc.ini:6:", "key 'proxy' in [service b]",
          "listen address 0.0.0.0:8000 is already used by [service a] (line 3)"}},
        {PROXY_A "[service b]\nrun = y\nproxy = 198.18.0.5:8000 -> 8080\n",
         {"svc.ini:6:", "key 'proxy' in [service b]",
          "listen address 198.18.0.5:8000 overlaps 0.0.0.0:8000 of [service a] (line 3)",
          "port 8000"}},
        {SVC_A "proxy = 127.0.0.1:8000 -> 1\n[service b]\nrun = y\nproxy = 0.0.0.0:8000 -> 2\n",
         {"svc.ini:6:", "[service b]", "overlaps 127.0.0.1:8000 of [service a] (line 3)"}},
    };
    check_error_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_services_vip_proxy_several_errors(void **state)
{
    (void)state;
    const char *text = "[service web]\n" /* 1 */
                       "run = ./web\n"   /* 2 */
                       "vip = 198.18.0.1/33 dev eth0, 198.18.0.2 dev eth0, 198.18.0.3/24 dev eth0\n"
                       "proxy = nowhere -> 0\n" /* 4 */
                       "hold = 1s\n";           /* 5 */
    memset(&g_set, 0x33, sizeof g_set);
    us_errors err;
    assert_int_equal(parse_svc(text, &err), -1);
    assert_int_equal(g_set.n, 0x33333333);
    expect_msg(&err, "svc.ini:3:", "key 'vip'", "prefix 33", "got '198.18.0.1/33 dev eth0'");
    expect_msg(&err, "svc.ini:3:", "key 'vip'", "missing '/PREFIX'", "got '198.18.0.2 dev eth0'");
    expect_msg(&err, "svc.ini:4:", "key 'proxy'", "listen address");
    expect_msg(&err, "svc.ini:4:", "key 'proxy'", "backend port");
    assert_int_equal(err.n, 4); /* hold has its (bad) proxy: no extra message */
}

/* ---- services: health checks and failure policy ---- */

static void test_services_checks_valid(void **state)
{
    (void)state;
    const char *text =
        "[service web]\n"
        "run = ./web\n"
        "check = http://127.0.0.1:8080/healthz?deep=1&x=y   # query kept\n"
        "check = tcp://10.0.0.5:5432/\n"
        "check = exec:  pg_isready -q -h 127.0.0.1 ; test -f /tmp/ok   # trailing comment\n"
        "check_interval = 2s\n"
        "check_timeout = 2000ms\n" /* equal to the interval: allowed */
        "rise = 1\n"
        "fall = 100\n"
        "check_status = 200-399\n"
        "check_grace = 0\n"
        "on_failure = restart\n"
        "restart_backoff = 500ms..1m\n"
        "max_restarts = 0\n"
        "restart_window = 5m\n"
        "failure_threshold = 1000\n"
        "failure_window = 1h\n"
        "failure_cooldown = 0\n"
        "min_failover_interval = 30s\n"
        "failback = yes\n"
        "[service db]\n"
        "run = ./db\n"
        "check = http://127.0.0.1:1\n" /* no path: "/" */
        "check = HTTP://127.0.0.1:65535?ready\n"
        "check = tcp://127.0.0.1:5432\n"
        "check_status = 204\n"
        "restart_backoff = 1s\n" /* one value: MIN = MAX */
        "failback = off\n"
        "on_failure = failover\n"
        "[service mq]\n"
        "run = ./mq\n"
        "restart_backoff = 1s .. 1s\n"
        "failback = true\n"
        "min_failover_interval = 0\n"
        "failure_cooldown = 1500\n";
    us_errors err;
    int rc = parse_svc(text, &err);
    if (rc != 0)
        fprintf(stderr, "%s\n", joined(&err));
    assert_int_equal(rc, 0);
    assert_int_equal(g_set.n, 3);

    const us_service_def *w = &g_set.svc[0];
    assert_int_equal(w->n_checks, 3);
    assert_int_equal(w->checks[0].kind, US_CHECK_HTTP);
    assert_string_equal(w->checks[0].text, "http://127.0.0.1:8080/healthz?deep=1&x=y");
    assert_string_equal(w->checks[0].host, "127.0.0.1");
    assert_int_equal(w->checks[0].port, 8080);
    assert_string_equal(w->checks[0].path, "/healthz?deep=1&x=y");
    assert_string_equal(us_check_cmd(&w->checks[0]), "");
    assert_int_equal(w->checks[1].kind, US_CHECK_TCP);
    assert_string_equal(w->checks[1].text, "tcp://10.0.0.5:5432/");
    assert_string_equal(w->checks[1].host, "10.0.0.5");
    assert_int_equal(w->checks[1].port, 5432);
    assert_string_equal(w->checks[1].path, "");
    assert_int_equal(w->checks[2].kind, US_CHECK_EXEC);
    assert_string_equal(w->checks[2].text, "exec:  pg_isready -q -h 127.0.0.1 ; test -f /tmp/ok");
    assert_string_equal(us_check_cmd(&w->checks[2]),
                        "pg_isready -q -h 127.0.0.1 ; test -f /tmp/ok");
    assert_string_equal(w->checks[2].host, "");
    assert_int_equal(w->checks[2].port, 0);
    assert_int_equal(w->check_interval_ms, 2000);
    assert_int_equal(w->check_timeout_ms, 2000);
    assert_int_equal(w->rise, 1);
    assert_int_equal(w->fall, 100);
    assert_int_equal(w->check_status_min, 200);
    assert_int_equal(w->check_status_max, 399);
    assert_int_equal(w->check_grace_ms, 0);
    assert_int_equal(w->on_failure, US_ON_FAILURE_RESTART);
    assert_int_equal(w->restart_backoff_min_ms, 500);
    assert_int_equal(w->restart_backoff_max_ms, 60000);
    assert_int_equal(w->max_restarts, 0);
    assert_int_equal(w->restart_window_ms, 300000);
    assert_int_equal(w->failure_threshold, 1000);
    assert_int_equal(w->failure_window_ms, 3600000);
    assert_int_equal(w->failure_cooldown_ms, 0);
    assert_int_equal(w->min_failover_interval_ms, 30000);
    assert_true(w->failback);

    const us_service_def *d = &g_set.svc[1];
    assert_int_equal(d->n_checks, 3);
    assert_int_equal(d->checks[0].kind, US_CHECK_HTTP);
    assert_string_equal(d->checks[0].path, "/");
    assert_int_equal(d->checks[0].port, 1);
    assert_int_equal(d->checks[1].kind, US_CHECK_HTTP);
    assert_string_equal(d->checks[1].path, "/?ready");
    assert_int_equal(d->checks[1].port, 65535);
    assert_string_equal(d->checks[1].text, "HTTP://127.0.0.1:65535?ready");
    assert_int_equal(d->checks[2].kind, US_CHECK_TCP);
    assert_int_equal(d->checks[2].port, 5432);
    assert_int_equal(d->check_status_min, 204);
    assert_int_equal(d->check_status_max, 204);
    assert_int_equal(d->restart_backoff_min_ms, 1000);
    assert_int_equal(d->restart_backoff_max_ms, 1000);
    assert_false(d->failback);
    assert_int_equal(d->on_failure, US_ON_FAILURE_FAILOVER);
    /* the untouched tuning keys keep their defaults */
    assert_int_equal(d->check_interval_ms, 1000);
    assert_int_equal(d->check_timeout_ms, 500);

    const us_service_def *m = &g_set.svc[2];
    assert_int_equal(m->n_checks, 0);
    assert_int_equal(m->restart_backoff_min_ms, 1000);
    assert_int_equal(m->restart_backoff_max_ms, 1000);
    assert_true(m->failback);
    assert_int_equal(m->min_failover_interval_ms, 0);
    assert_int_equal(m->failure_cooldown_ms, 1500);

    /* the other spellings of a boolean */
    static const struct {
        const char *v;
        bool want;
    } bools[] = {{"yes", true}, {"no", false},  {"true", true}, {"false", false},
                 {"on", true},  {"off", false}, {"1", true},    {"0", false}};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        char t[128];
        snprintf(t, sizeof t, "[service a]\nrun = x\nfailback = %s\n", bools[i].v);
        assert_int_equal(parse_svc(t, &err), 0);
        assert_int_equal(g_set.svc[0].failback, bools[i].want);
    }
}

static void test_services_checks_defaults(void **state)
{
    (void)state;
    us_errors err;
    memset(&g_set, 0x5A, sizeof g_set);
    assert_int_equal(parse_svc("[service a]\nrun = x\n"
                               "[service b]\nrun = y\ncheck = tcp://127.0.0.1:80\n",
                               &err),
                     0);
    assert_int_equal(g_set.n, 2);
    for (int i = 0; i < 2; i++) {
        const us_service_def *d = &g_set.svc[i];
        assert_int_equal(d->n_checks, i);
        assert_int_equal(d->check_interval_ms, 1000);
        assert_int_equal(d->check_timeout_ms, 500);
        assert_int_equal(d->rise, 2);
        assert_int_equal(d->fall, 3);
        assert_int_equal(d->check_status_min, 200);
        assert_int_equal(d->check_status_max, 299);
        assert_int_equal(d->check_grace_ms, 10000);
        assert_int_equal(d->on_failure, US_ON_FAILURE_FAILOVER);
        assert_int_equal(d->restart_backoff_min_ms, 200);
        assert_int_equal(d->restart_backoff_max_ms, 30000);
        assert_int_equal(d->max_restarts, 3);
        assert_int_equal(d->restart_window_ms, 60000);
        assert_int_equal(d->failure_threshold, 3);
        assert_int_equal(d->failure_window_ms, 600000);
        assert_int_equal(d->failure_cooldown_ms, 600000);
        assert_int_equal(d->min_failover_interval_ms, 0);
        assert_false(d->failback);
    }
    /* unused check slots are zero, not leftovers */
    static const us_check_def zero;
    assert_memory_equal(&g_set.svc[1].checks[1], &zero, sizeof zero);
}

static void test_services_check_limits(void **state)
{
    (void)state;
    us_errors err;
    /* US_MAX_CHECKS fit */
    assert_int_equal(parse_svc(SVC_A "check = tcp://127.0.0.1:1\n"
                                     "check = tcp://127.0.0.1:2\n"
                                     "check = exec:true\n"
                                     "check = http://127.0.0.1:4/\n",
                               &err),
                     0);
    assert_int_equal(g_set.svc[0].n_checks, US_MAX_CHECKS);
    assert_int_equal(g_set.svc[0].checks[3].port, 4);

    /* one more: reported once, on the line where the limit was passed */
    memset(&g_set, 0x5A, sizeof g_set);
    assert_int_equal(parse_svc(SVC_A "check = tcp://127.0.0.1:1\n"
                                     "check = tcp://127.0.0.1:2\n"
                                     "check = tcp://127.0.0.1:3\n"
                                     "check = tcp://127.0.0.1:4\n"
                                     "check = tcp://127.0.0.1:5\n"
                                     "check = tcp://127.0.0.1:6\n",
                               &err),
                     -1);
    assert_int_equal(g_set.n, 0x5A5A5A5A);
    expect_msg(&err, "svc.ini:7:", "key 'check' in [service a]", "at most 4 checks",
               "US_MAX_CHECKS", "got 'tcp://127.0.0.1:5'");
    assert_int_equal(err.n, 1);

    /* the limit is per service */
    assert_int_equal(parse_svc(SVC_A "check = exec:a\ncheck = exec:b\ncheck = exec:c\n"
                                     "check = exec:d\n"
                                     "[service b]\nrun = y\ncheck = exec:a\ncheck = exec:b\n"
                                     "check = exec:c\ncheck = exec:d\n",
                               &err),
                     0);
    assert_int_equal(g_set.svc[1].n_checks, US_MAX_CHECKS);

    /* text and path lengths */
    static char text[4096];
    char cmd[US_CMD_MAX];
    memset(cmd, 'x', sizeof cmd);
    memcpy(cmd, "exec:", 5);
    cmd[US_CMD_MAX - 1] = '\0'; /* 1023 characters: fits */
    snprintf(text, sizeof text, SVC_A "check = %s\n", cmd);
    assert_int_equal(parse_svc(text, &err), 0);
    assert_int_equal(strlen(us_check_cmd(&g_set.svc[0].checks[0])), US_CMD_MAX - 1 - 5);
    snprintf(text, sizeof text, SVC_A "check = %sy\n", cmd);
    memset(&g_set, 0x5A, sizeof g_set);
    assert_int_equal(parse_svc(text, &err), -1);
    assert_int_equal(g_set.n, 0x5A5A5A5A);
    expect_msg(&err, "svc.ini:3:", "key 'check' in [service a]", "1024 characters long",
               "at most 1023 (US_CMD_MAX)");
    assert_int_equal(err.n, 1);

    char path[US_PATH_MAX + 1];
    memset(path, 'p', sizeof path);
    path[0] = '/';
    path[US_PATH_MAX - 1] = '\0'; /* 255 characters: fits */
    snprintf(text, sizeof text, SVC_A "check = http://127.0.0.1:80%s\n", path);
    assert_int_equal(parse_svc(text, &err), 0);
    assert_string_equal(g_set.svc[0].checks[0].path, path);
    snprintf(text, sizeof text, SVC_A "check = http://127.0.0.1:80%sq\n", path);
    memset(&g_set, 0x5A, sizeof g_set);
    assert_int_equal(parse_svc(text, &err), -1);
    assert_int_equal(g_set.n, 0x5A5A5A5A);
    expect_msg(&err, "svc.ini:3:", "key 'check' in [service a]",
               "the path is longer than 255 characters (US_PATH_MAX)");
    assert_int_equal(err.n, 1);
}

#define CHECK_A SVC_A "check = tcp://127.0.0.1:5432\n"

static void test_services_check_errors(void **state)
{
    (void)state;
    static const err_case cases[] = {
        /* schemes */
        {SVC_A "check = https://127.0.0.1:8443/health\n",
         {"svc.ini:3:", "key 'check' in [service a]",
          "https is not supported; expected http://HOST:PORT/PATH, tcp://HOST:PORT or "
          "exec:COMMAND",
          "got 'https://127.0.0.1:8443/health'"}},
        {SVC_A "check = ftp://127.0.0.1:21\n",
         {"svc.ini:3:", "key 'check'",
          "ftp is not supported; expected http://HOST:PORT/PATH, tcp://HOST:PORT or "
          "exec:COMMAND"}},
        {SVC_A "check = true\n",
         {"svc.ini:3:", "key 'check' in [service a]",
          "expected http://HOST:PORT/PATH, tcp://HOST:PORT or exec:COMMAND", "got 'true'"}},
        {SVC_A "check = 127.0.0.1:8080\n",
         {"svc.ini:3:", "key 'check'", "expected http://HOST:PORT/PATH"}},
        {SVC_A "check = http:/127.0.0.1:80/\n",
         {"svc.ini:3:", "key 'check'", "expected http://HOST:PORT/PATH"}},
        {SVC_A "check = ://127.0.0.1:80/\n",
         {"svc.ini:3:", "key 'check'", "expected http://HOST:PORT/PATH"}},
        {SVC_A "check =\n",
         {"svc.ini:3:", "key 'check'", "expected http://HOST:PORT/PATH", "got ''"}},
        {SVC_A "check =    # nothing\n", {"svc.ini:3:", "key 'check'", "got ''"}},
        /* hosts */
        {SVC_A "check = http://localhost:8080/healthz\n",
         {"svc.ini:3:", "key 'check' in [service a]", "'localhost' is not an IPv4 address",
          "expected an IPv4 address", "got 'http://localhost:8080/healthz'"}},
        {SVC_A "check = tcp://db.example.com:5432\n",
         {"svc.ini:3:", "key 'check'", "'db.example.com' is not an IPv4 address",
          "tcp://HOST:PORT"}},
        {SVC_A "check = http://[::1]:80/\n",
         {"svc.ini:3:", "key 'check'", "is not an IPv4 address"}},
        {SVC_A "check = http://256.1.1.1:80/\n",
         {"svc.ini:3:", "key 'check'", "'256.1.1.1' is not an IPv4 address"}},
        {SVC_A "check = http://user@127.0.0.1:80/\n",
         {"svc.ini:3:", "key 'check'", "is not an IPv4 address"}},
        {SVC_A "check = http://:80/\n", {"svc.ini:3:", "key 'check'", "missing the host"}},
        {SVC_A "check = tcp://\n", {"svc.ini:3:", "key 'check'", "missing the host"}},
        /* ports */
        {SVC_A "check = http://127.0.0.1/healthz\n",
         {"svc.ini:3:", "key 'check' in [service a]", "missing ':PORT' after the host",
          "http://HOST:PORT/PATH"}},
        {SVC_A "check = tcp://127.0.0.1\n",
         {"svc.ini:3:", "key 'check'", "missing ':PORT'", "tcp://HOST:PORT"}},
        {SVC_A "check = http://127.0.0.1:/x\n",
         {"svc.ini:3:", "key 'check'", "'' is not a port", "PORT 1..65535"}},
        {SVC_A "check = tcp://127.0.0.1:0\n",
         {"svc.ini:3:", "key 'check'", "'0' is not a port", "PORT 1..65535"}},
        {SVC_A "check = tcp://127.0.0.1:65536\n",
         {"svc.ini:3:", "key 'check'", "'65536' is not a port"}},
        {SVC_A "check = http://127.0.0.1:http/\n",
         {"svc.ini:3:", "key 'check'", "'http' is not a port"}},
        {SVC_A "check = tcp://127.0.0.1:5432 extra\n",
         {"svc.ini:3:", "key 'check'", "'5432 extra' is not a port"}},
        {SVC_A "check = tcp://127.0.0.1:80:90\n",
         {"svc.ini:3:", "key 'check'", "'80:90' is not a port"}},
        /* paths */
        {SVC_A "check = tcp://127.0.0.1:5432/db\n",
         {"svc.ini:3:", "key 'check'", "unexpected '/db' after the port",
          "tcp checks have no path"}},
        {SVC_A "check = http://127.0.0.1:80/a b\n",
         {"svc.ini:3:", "key 'check'", "space or control character", "percent-encode"}},
        {SVC_A "check = http://127.0.0.1:80/a#frag\n",
         {"svc.ini:3:", "key 'check'", "fragment", "not sent to the server"}},
        /* exec */
        {SVC_A "check = exec:\n",
         {"svc.ini:3:", "key 'check' in [service a]", "empty command after 'exec:'",
          "expected exec:COMMAND", "got 'exec:'"}},
        {SVC_A "check = exec:    # no command\n",
         {"svc.ini:3:", "key 'check'", "empty command after 'exec:'"}},
        /* a bad check still counts as a check: the tuning keys are not reported again */
        {SVC_A "check = https://127.0.0.1:443/\nrise = 3\n",
         {"svc.ini:3:", "key 'check'", "https is not supported"}},
        /* tuning keys */
        {CHECK_A "check_interval = 0\n",
         {"svc.ini:4:", "key 'check_interval' in [service a]", "expected a duration greater than 0",
          "got '0'"}},
        {CHECK_A "check_interval = often\n",
         {"svc.ini:4:", "key 'check_interval'", "duration greater than 0", "got 'often'"}},
        {CHECK_A "check_interval = 1000h\n",
         {"svc.ini:4:", "key 'check_interval'", "a duration of at most 596h", "got '1000h'"}},
        {CHECK_A "check_timeout = 0ms\n",
         {"svc.ini:4:", "key 'check_timeout'", "duration greater than 0", "got '0ms'"}},
        {CHECK_A "check_timeout = -1s\n", {"svc.ini:4:", "key 'check_timeout'", "got '-1s'"}},
        {CHECK_A "rise = 0\n",
         {"svc.ini:4:", "key 'rise' in [service a]", "an integer 1..100", "got '0'"}},
        {CHECK_A "rise = 101\n", {"svc.ini:4:", "key 'rise'", "1..100", "got '101'"}},
        {CHECK_A "fall = 0\n", {"svc.ini:4:", "key 'fall'", "an integer 1..100", "got '0'"}},
        {CHECK_A "fall = three\n", {"svc.ini:4:", "key 'fall'", "got 'three'"}},
        {CHECK_A "check_status = 99\n",
         {"svc.ini:4:", "key 'check_status' in [service a]", "an HTTP status 100..599", "200-299",
          "got '99'"}},
        {CHECK_A "check_status = 600\n", {"svc.ini:4:", "key 'check_status'", "got '600'"}},
        {CHECK_A "check_status = 200-600\n",
         {"svc.ini:4:", "key 'check_status'", "100..599", "got '200-600'"}},
        {CHECK_A "check_status = 299-200\n",
         {"svc.ini:4:", "key 'check_status'", "LOW <= HIGH", "got '299-200'"}},
        {CHECK_A "check_status = 2xx\n", {"svc.ini:4:", "key 'check_status'", "got '2xx'"}},
        {CHECK_A "check_status = 200-\n", {"svc.ini:4:", "key 'check_status'", "got '200-'"}},
        {CHECK_A "check_status = 200 - 299\n",
         {"svc.ini:4:", "key 'check_status'", "got '200 - 299'"}},
        {CHECK_A "check_status =\n", {"svc.ini:4:", "key 'check_status'", "got ''"}},
        {CHECK_A "check_grace = -1s\n",
         {"svc.ini:4:", "key 'check_grace'", "duration >= 0", "got '-1s'"}},
        {CHECK_A "check_grace = later\n", {"svc.ini:4:", "key 'check_grace'", "got 'later'"}},
        {CHECK_A "rise = 2\nrise = 3\n",
         {"svc.ini:5:", "duplicate key 'rise'", "first set on line 4"}},
        /* check_timeout <= check_interval, whichever of them was set */
        {CHECK_A "check_interval = 1s\ncheck_timeout = 2s\n",
         {"svc.ini:5:", "key 'check_timeout' in [service a]",
          "expected check_timeout <= check_interval",
          "got check_timeout 2000ms (line 5) > check_interval 1000ms (line 4)"}},
        {CHECK_A "check_timeout = 1001\n",
         {"svc.ini:4:", "key 'check_timeout'", "check_timeout 1001ms (line 4)",
          "check_interval 1000ms (the default)"}},
        {CHECK_A "check_interval = 200ms\n",
         {"svc.ini:4:", "key 'check_interval' in [service a]",
          "check_timeout 500ms (the default) > check_interval 200ms (line 4)"}},
        /* a bad interval is reported alone, without a comparison against the default */
        {CHECK_A "check_interval = 0\ncheck_timeout = 2s\n",
         {"svc.ini:4:", "key 'check_interval'", "duration greater than 0"}},
        /* tuning keys need a check */
        {SVC_A "check_interval = 5s\n",
         {"svc.ini:3:", "key 'check_interval' in [service a]", "only meaningful with 'check'",
          "this service has no 'check' key"}},
        {SVC_A "check_timeout = 1s\n",
         {"svc.ini:3:", "key 'check_timeout'", "only meaningful with 'check'"}},
        {SVC_A "rise = 2\n", {"svc.ini:3:", "key 'rise'", "only meaningful with 'check'"}},
        {SVC_A "fall = 2\n", {"svc.ini:3:", "key 'fall'", "only meaningful with 'check'"}},
        {SVC_A "check_status = 204\n",
         {"svc.ini:3:", "key 'check_status'", "only meaningful with 'check'"}},
        {SVC_A "check_grace = 0\n",
         {"svc.ini:3:", "key 'check_grace'", "only meaningful with 'check'"}},
        {CHECK_A "[service b]\nrun = y\nrise = 2\n",
         {"svc.ini:6:", "key 'rise' in [service b]", "only meaningful with 'check'"}},
        /* failure policy */
        {SVC_A "on_failure = reboot\n",
         {"svc.ini:3:", "key 'on_failure' in [service a]", "'failover' or 'restart'",
          "got 'reboot'"}},
        {SVC_A "on_failure = Restart\n", {"svc.ini:3:", "key 'on_failure'", "got 'Restart'"}},
        {SVC_A "restart_backoff = 5s..1s\n",
         {"svc.ini:3:", "key 'restart_backoff' in [service a]", "MIN <= MAX", "got '5s..1s'"}},
        {SVC_A "restart_backoff = 0..1s\n",
         {"svc.ini:3:", "key 'restart_backoff'", "MIN..MAX durations greater than 0",
          "got '0..1s'"}},
        {SVC_A "restart_backoff = 0\n",
         {"svc.ini:3:", "key 'restart_backoff'", "durations greater than 0", "got '0'"}},
        {SVC_A "restart_backoff = 1s..\n",
         {"svc.ini:3:", "key 'restart_backoff'", "MIN..MAX", "got '1s..'"}},
        {SVC_A "restart_backoff = ..1s\n", {"svc.ini:3:", "key 'restart_backoff'", "got '..1s'"}},
        {SVC_A "restart_backoff = 1s-2s\n", {"svc.ini:3:", "key 'restart_backoff'", "got '1s-2s'"}},
        {SVC_A "restart_backoff = 1s...2s\n",
         {"svc.ini:3:", "key 'restart_backoff'", "got '1s...2s'"}},
        {SVC_A "restart_backoff = 1s..1000h\n",
         {"svc.ini:3:", "key 'restart_backoff'", "at most 596h", "got '1s..1000h'"}},
        {SVC_A "restart_backoff = 10000000000000000000000000000000000000ms..1s\n",
         {"svc.ini:3:", "key 'restart_backoff'", "MIN..MAX"}},
        {SVC_A "max_restarts = -1\n",
         {"svc.ini:3:", "key 'max_restarts' in [service a]", "an integer 0..1000", "got '-1'"}},
        {SVC_A "max_restarts = 1001\n", {"svc.ini:3:", "key 'max_restarts'", "got '1001'"}},
        {SVC_A "restart_window = 0\n",
         {"svc.ini:3:", "key 'restart_window'", "duration greater than 0", "got '0'"}},
        {SVC_A "failure_threshold = 0\n",
         {"svc.ini:3:", "key 'failure_threshold'", "an integer 1..1000", "got '0'"}},
        {SVC_A "failure_threshold = 1001\n",
         {"svc.ini:3:", "key 'failure_threshold'", "got '1001'"}},
        {SVC_A "failure_window = 0s\n",
         {"svc.ini:3:", "key 'failure_window'", "duration greater than 0", "got '0s'"}},
        {SVC_A "failure_window = 1000h\n",
         {"svc.ini:3:", "key 'failure_window'", "at most 596h (2147483647ms)"}},
        {SVC_A "failure_cooldown = -1\n",
         {"svc.ini:3:", "key 'failure_cooldown'", "duration >= 0", "got '-1'"}},
        {SVC_A "min_failover_interval = 1 m\n",
         {"svc.ini:3:", "key 'min_failover_interval'", "duration >= 0", "got '1 m'"}},
        {SVC_A "failback = maybe\n",
         {"svc.ini:3:", "key 'failback' in [service a]", "'yes' or 'no'", "got 'maybe'"}},
        {SVC_A "failback = YES\n", {"svc.ini:3:", "key 'failback'", "got 'YES'"}},
        {SVC_A "failback =\n", {"svc.ini:3:", "key 'failback'", "got ''"}},
        {SVC_A "failback = yes\nfailback = no\n",
         {"svc.ini:4:", "duplicate key 'failback'", "first set on line 3"}},
    };
    check_error_cases(cases, sizeof cases / sizeof cases[0]);
}

static void test_services_check_several_errors(void **state)
{
    (void)state;
    const char *text = "[service web]\n"                /* 1 */
                       "run = ./web\n"                  /* 2 */
                       "check = https://127.0.0.1:1/\n" /* 3 */
                       "check = tcp://127.0.0.1\n"      /* 4 */
                       "check = exec:ok\n"              /* 5 */
                       "rise = 0\n"                     /* 6 */
                       "restart_backoff = 2s..1s\n"     /* 7 */
                       "[service db]\n"                 /* 8 */
                       "run = ./db\n"                   /* 9 */
                       "fall = 2\n";                    /* 10 */
    memset(&g_set, 0x33, sizeof g_set);
    us_service_set *copy = malloc(sizeof *copy);
    assert_non_null(copy);
    memcpy(copy, &g_set, sizeof g_set);
    us_errors err;
    assert_int_equal(parse_svc(text, &err), -1);
    assert_memory_equal(&g_set, copy, sizeof g_set);
    free(copy);
    expect_msg(&err, "svc.ini:3:", "key 'check' in [service web]", "https is not supported");
    expect_msg(&err, "svc.ini:4:", "key 'check' in [service web]", "missing ':PORT'");
    expect_msg(&err, "svc.ini:6:", "key 'rise' in [service web]", "1..100");
    expect_msg(&err, "svc.ini:7:", "key 'restart_backoff' in [service web]", "MIN <= MAX");
    expect_msg(&err, "svc.ini:10:", "key 'fall' in [service db]", "only meaningful with 'check'");
    assert_int_equal(err.n, 5);
}

/* ---- INI reader ---- */

typedef struct ini_rec {
    int n;
    char lines[16][160];
    int stop_at; /* callback number that returns non-zero; 0 = never */
} ini_rec;

static int ini_rec_cb(void *user, const char *section, const char *key, const char *value, int line)
{
    ini_rec *r = user;
    if (r->n < 16)
        snprintf(r->lines[r->n], sizeof r->lines[0], "%d|%s|%s|%s", line, section,
                 key ? key : "(null)", value ? value : "(null)");
    r->n++;
    return r->stop_at && r->n == r->stop_at;
}

static void test_ini_reader(void **state)
{
    (void)state;
    const char *text = "\xEF\xBB\xBF"
                       "top = level\n"
                       "  ; comment\n"
                       "[ service  web ]   # trailing comment\n"
                       "\tkey=value\r\n"
                       "spaced   =   a b  c   \n"
                       "hash = a#b # gone\n"
                       "semi = a;b ; kept\t# gone\n"
                       "empty =\n"
                       "eq = a=b\n"
                       "[x]";
    ini_rec r = {0};
    us_errors err = {0};
    assert_int_equal(us_ini_parse(text, strlen(text), ini_rec_cb, &r, &err, "t.ini"), 0);
    assert_int_equal(err.n, 0);
    assert_int_equal(r.n, 9);
    assert_string_equal(r.lines[0], "1||top|level");
    assert_string_equal(r.lines[1], "3|service  web|(null)|(null)");
    assert_string_equal(r.lines[2], "4|service  web|key|value");
    assert_string_equal(r.lines[3], "5|service  web|spaced|a b  c");
    assert_string_equal(r.lines[4], "6|service  web|hash|a#b");
    assert_string_equal(r.lines[5], "7|service  web|semi|a;b ; kept"); /* only " #" comments */
    assert_string_equal(r.lines[6], "8|service  web|empty|");
    assert_string_equal(r.lines[7], "9|service  web|eq|a=b");
    assert_string_equal(r.lines[8], "10|x|(null)|(null)");
}

static void test_ini_errors_and_long_lines(void **state)
{
    (void)state;
    size_t big = 100000;
    char *text = malloc(big + 256);
    assert_non_null(text);
    strcpy(text, "[a]\nnoequals\n[b\n[]\nk = ");
    size_t off = strlen(text);
    memset(text + off, 'v', big);
    strcpy(text + off + big, "\n[c]\nk2 = 1\n");
    ini_rec r = {0};
    us_errors err = {0};
    assert_int_equal(us_ini_parse(text, strlen(text), ini_rec_cb, &r, &err, "t.ini"), -1);
    assert_int_equal(err.n, 3);
    expect_msg(&err, "t.ini:2:", "got 'noequals'");
    expect_msg(&err, "t.ini:3:", "got '[b'");
    expect_msg(&err, "t.ini:4:", "section name");
    /* the long key sits under the malformed "[]" header: skipped; [c] is read again */
    assert_int_equal(r.n, 3);
    assert_string_equal(r.lines[1], "6|c|(null)|(null)");
    assert_string_equal(r.lines[2], "7|c|k2|1");

    /* a long value under a good section comes through whole */
    strcpy(text, "[a]\nk = ");
    off = strlen(text);
    memset(text + off, 'v', big);
    text[off + big] = '\0';
    us_errors err2 = {0};
    ini_rec r2 = {0};
    assert_int_equal(us_ini_parse(text, strlen(text), ini_rec_cb, &r2, &err2, "t.ini"), 0);
    assert_int_equal(r2.n, 2);
    free(text);

    /* embedded NUL, and a callback that stops */
    const char nul[] = "[a]\nk = v\0w\nk2 = 2\nk3 = 3\n";
    ini_rec r3 = {.stop_at = 2};
    us_errors err3 = {0};
    assert_int_equal(us_ini_parse(nul, sizeof nul - 1, ini_rec_cb, &r3, &err3, "t.ini"), -1);
    expect_msg(&err3, "t.ini:2:", "NUL");
    assert_int_equal(r3.n, 2); /* [a], k2; k3 never seen */
    assert_string_equal(r3.lines[1], "3|a|k2|2");
}

static void test_ini_excerpt(void **state)
{
    (void)state;
    char buf[8];
    assert_string_equal(us_ini_excerpt("short", buf, sizeof buf), "short");
    assert_string_equal(us_ini_excerpt("exactly", buf, sizeof buf), "exactly");
    assert_string_equal(us_ini_excerpt("too long!", buf, sizeof buf), "too ...");
    assert_string_equal(us_ini_excerpt("a\tb", buf, sizeof buf), "a?b");
}

/* ---- errors, durations, profiles ---- */

static void test_errors_overflow(void **state)
{
    (void)state;
    us_errors err = {0};
    for (int i = 0; i < US_ERRORS_MAX + 3; i++)
        us_errors_add(&err, "problem %d", i);
    assert_int_equal(err.n, US_ERRORS_MAX);
    assert_int_equal(err.dropped, 3);
    const char *j = joined(&err);
    assert_non_null(strstr(j, "problem 0\nproblem 1\n"));
    assert_non_null(strstr(j, "problem 31\n(and 3 more problems)"));
    char small[12];
    us_errors_join(&err, small, sizeof small);
    assert_string_equal(small, "problem 0\np");
    us_errors none = {0};
    us_errors_join(&none, small, sizeof small);
    assert_string_equal(small, "");

    /* long messages are cut, not overflowed */
    char big[US_ERROR_LEN + 200];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    us_errors one = {0};
    us_errors_add(&one, "%s", big);
    assert_int_equal(strlen(one.msg[0]), US_ERROR_LEN - 1);
}

static void test_durations(void **state)
{
    (void)state;
    assert_int_equal(us_parse_duration_ms("250ms"), 250);
    assert_int_equal(us_parse_duration_ms("2s"), 2000);
    assert_int_equal(us_parse_duration_ms("1m"), 60000);
    assert_int_equal(us_parse_duration_ms("1h"), 3600000);
    assert_int_equal(us_parse_duration_ms("1.5s"), 1500);
    assert_int_equal(us_parse_duration_ms("0.25s"), 250);
    assert_int_equal(us_parse_duration_ms("0.5m"), 30000);
    assert_int_equal(us_parse_duration_ms("1500"), 1500);
    assert_int_equal(us_parse_duration_ms("0"), 0);
    assert_int_equal(us_parse_duration_ms("0ms"), 0);
    static const char *bad[] = {"",        "-1",   "-5s", "1.5",   "1.5ms",
                                "1.0001s", ".5s",  "1.s", "5 s",   " 5s",
                                "5s ",     "5S",   "s",   "5sec",  "1e3",
                                "0x10",    "5ms5", "+5s", "1..5s", "99999999999999999999s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (us_parse_duration_ms(bad[i]) != -1)
            fail_msg("accepted '%s' as %ld", bad[i], us_parse_duration_ms(bad[i]));
    assert_int_equal(us_parse_duration_ms(NULL), -1);
}

static void test_profiles(void **state)
{
    (void)state;
    us_timing t;
    memset(&t, 0, sizeof t);
    assert_int_equal(us_timing_profile("default", &t), 0);
    assert_string_equal(t.name, "default");
    assert_int_equal(t.heartbeat_ms, 100);
    assert_int_equal(t.election_ms, 1000);
    assert_int_equal(t.lease_ms, 600);
    assert_int_equal(t.grant_window_ms, 300);
    assert_int_equal(t.drift_pct, 2);
    assert_int_equal(t.margin_ms, 50);
    assert_int_equal(t.suspect_ms, 300);
    assert_int_equal(t.dead_ms, 1000);
    assert_int_equal(t.demote_before_ms, 200);
    assert_int_equal(us_timing_profile("fast", &t), 0);
    assert_string_equal(t.name, "fast");
    assert_int_equal(t.heartbeat_ms, 25);
    assert_int_equal(t.election_ms, 300);
    assert_int_equal(t.lease_ms, 200);
    assert_int_equal(t.grant_window_ms, 100);
    assert_int_equal(t.drift_pct, 2);
    assert_int_equal(t.margin_ms, 12);
    assert_int_equal(t.suspect_ms, 100);
    assert_int_equal(t.dead_ms, 300);
    assert_int_equal(t.demote_before_ms, 60);
    us_timing before = t;
    assert_int_equal(us_timing_profile("Fast", &t), -1);
    assert_int_equal(us_timing_profile("", &t), -1);
    assert_memory_equal(&t, &before, sizeof t);
    /* lease safety needs: lease expires on the holder before the leader reuses the role */
    const char *names[] = {"default", "fast"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(us_timing_profile(names[i], &t), 0);
        assert_true(t.heartbeat_ms < t.grant_window_ms);
        assert_true(t.grant_window_ms < t.lease_ms);
        assert_true(t.demote_before_ms < t.lease_ms);
        assert_true(t.suspect_ms < t.dead_ms);
        assert_true(t.heartbeat_ms * 4 <= t.election_ms);
    }
}

/* ---- notify hooks ---- */

static void test_services_notify(void **state)
{
    (void)state;
    us_errors err;
    assert_int_equal(parse_svc("[service web]\nrun = x\nnotify = exec ./hook.sh web  # comment\n"
                               "notify_timeout = 2.5s\n[service db]\nrun = y\n",
                               &err),
                     0);
    assert_int_equal(g_set.n, 2);
    assert_string_equal(g_set.svc[0].notify, "exec ./hook.sh web");
    assert_int_equal(g_set.svc[0].notify_timeout_ms, 2500);
    /* defaults: no hook, 10 s */
    assert_string_equal(g_set.svc[1].notify, "");
    assert_int_equal(g_set.svc[1].notify_timeout_ms, 10000);
    assert_true(parse_svc("[service a]\nrun = x\nnotify = true\n", &err) == 0);
    assert_int_equal(g_set.svc[0].notify_timeout_ms, 10000);

    /* Replicated with the definition. */
    assert_int_equal(
        parse_svc("[service web]\nrun = x\nnotify = ./n.sh\nnotify_timeout = 3s\n", &err), 0);
    json_t *j = us_service_def_to_json(&g_set.svc[0]);
    static us_service_def back;
    assert_int_equal(us_service_def_from_json(&back, j), 0);
    json_decref(j);
    assert_string_equal(back.notify, "./n.sh");
    assert_int_equal(back.notify_timeout_ms, 3000);

    static const struct {
        const char *text;
        const char *frags[3];
    } bad[] = {
        {"[service a]\nrun = x\nnotify_timeout = 5s\n",
         {"svc.ini:3:", "key 'notify_timeout' in [service a]", "only meaningful with 'notify'"}},
        {"[service a]\nrun = x\nnotify = ./h\nnotify_timeout = 0\n",
         {"svc.ini:4:", "key 'notify_timeout'", "a duration greater than 0"}},
        {"[service a]\nrun = x\nnotify = ./h\nnotify_timeout = soon\n",
         {"svc.ini:4:", "key 'notify_timeout'", "got 'soon'"}},
        {"[service a]\nrun = x\nnotify =\n", {"svc.ini:3:", "key 'notify'", "a shell command"}},
        {"[service a]\nrun = x\nnotify = a\nnotify = b\n",
         {"svc.ini:4:", "duplicate key 'notify'", "first set on line 3"}},
        {"[service a]\nrun = x\nnotfy = a\n", {"svc.ini:3:", "did you mean 'notify'?", NULL}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse_svc(bad[i].text, &err), -1);
        if (bad[i].frags[2])
            expect_msg(&err, bad[i].frags[0], bad[i].frags[1], bad[i].frags[2]);
        else
            expect_msg(&err, bad[i].frags[0], bad[i].frags[1]);
        if (err.n != 1)
            fail_msg("case %zu: expected exactly one problem, got:\n%s", i, joined(&err));
    }
    /* longer than US_CMD_MAX */
    static char text[US_CMD_MAX + 128];
    snprintf(text, sizeof text, "[service a]\nrun = x\nnotify = %0*d\n", US_CMD_MAX, 7);
    assert_int_equal(parse_svc(text, &err), -1);
    expect_msg(&err, "svc.ini:3:", "key 'notify'", "at most 1023 characters (US_CMD_MAX)");
}

/* ---- check-config support ---- */

static void test_node_check_creates_nothing(void **state)
{
    (void)state;
    char dir[PATH_MAX], text[8192];
    snprintf(dir, sizeof dir, "%s/not-yet/data", g_dir);
    snprintf(text, sizeof text,
             "[node]\nname = n1\naddress = 127.0.0.1:7101\ndata_dir = %s\n"
             "[cluster]\nname = demo\nmembers = n1=127.0.0.1:7101\n",
             dir);
    const char *path = write_file("check.ini", text);
    us_errors err, warn;
    memset(&err, 0, sizeof err);
    memset(&warn, 0, sizeof warn);
    memset(&g_cfg, 0, sizeof g_cfg);
    assert_int_equal(us_config_check_node(path, &g_cfg, &err, &warn), 0);
    assert_int_equal(err.n, 0);
    assert_string_equal(g_cfg.name, "n1");
    assert_string_equal(g_cfg.data_dir, dir);
    assert_int_equal(warn.n, 1);
    char where[PATH_MAX + 16];
    snprintf(where, sizeof where, "%s:4: key 'node.data_dir': warning: ", path);
    expect_msg(&warn, where, "does not exist yet (the agent creates it)");
    struct stat st;
    snprintf(text, sizeof text, "%s/not-yet", g_dir);
    assert_int_equal(stat(text, &st), -1); /* nothing created, not even the parent */

    /* A relative data_dir stays as written (the real load makes it absolute). */
    write_file("rel.ini", "[node]\nname = n1\naddress = 127.0.0.1:7101\ndata_dir = rel/dir\n"
                          "[cluster]\nname = demo\njoin = 127.0.0.1:7102\n");
    memset(&err, 0, sizeof err);
    memset(&warn, 0, sizeof warn);
    assert_int_equal(us_config_check_node(tmp_path("rel.ini"), &g_cfg, &err, &warn), 0);
    assert_string_equal(g_cfg.data_dir, "rel/dir");

    /* Below a regular file: a warning, not a problem. */
    write_file("plain", "x\n");
    snprintf(text, sizeof text,
             "[node]\nname = n1\naddress = 127.0.0.1:7101\ndata_dir = %s/plain/sub\n"
             "[cluster]\nname = demo\njoin = 127.0.0.1:7102\n",
             g_dir);
    path = write_file("check2.ini", text);
    memset(&err, 0, sizeof err);
    memset(&warn, 0, sizeof warn);
    assert_int_equal(us_config_check_node(path, &g_cfg, &err, &warn), 0);
    expect_msg(&warn, "key 'node.data_dir': warning: cannot access", strerror(ENOTDIR));
    snprintf(text, sizeof text,
             "[node]\nname = n1\naddress = 127.0.0.1:7101\ndata_dir = %s/plain\n"
             "[cluster]\nname = demo\njoin = 127.0.0.1:7102\n",
             g_dir);
    path = write_file("check3.ini", text);
    memset(&warn, 0, sizeof warn);
    assert_int_equal(us_config_check_node(path, &g_cfg, &err, &warn), 0);
    expect_msg(&warn, "key 'node.data_dir': warning:", "is not a directory");

    /* Real problems are still problems, and the output is untouched. */
    memset(&g_cfg, 0, sizeof g_cfg);
    path = write_file("check4.ini", "[node]\nname = N1\n[cluster]\nname = demo\n");
    memset(&err, 0, sizeof err);
    memset(&warn, 0, sizeof warn);
    assert_int_equal(us_config_check_node(path, &g_cfg, &err, &warn), -1);
    expect_msg(&err, "check4.ini:2:", "key 'node.name'", "got 'N1'");
    expect_msg(&err, "missing key 'node.data_dir'");
    assert_string_equal(g_cfg.name, "");
}

static void test_config_detect(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        us_config_kind want;
    } cases[] = {
        {"[node]\nname = n1\n", US_CONFIG_NODE},
        {"# comment\n\n[cluster]\nname = demo\n[node]\n", US_CONFIG_NODE},
        {"[service web]\nrun = x\n", US_CONFIG_SERVICES},
        {"[service]\nrun = x\n", US_CONFIG_SERVICES},  /* bad, but meant as a services file */
        {"[service Web Extra]\n", US_CONFIG_SERVICES}, /* ditto */
        {"[bogus]\n[service a]\n[node]\n", US_CONFIG_SERVICES}, /* the first telling header */
        {"[services]\nrun = x\n", US_CONFIG_UNKNOWN},
        {"run = x\n", US_CONFIG_UNKNOWN},
        {"", US_CONFIG_UNKNOWN},
        {"[node\n[service a]\n", US_CONFIG_SERVICES}, /* a broken header tells nothing */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        us_config_kind got = us_config_detect(cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want)
            fail_msg("case %zu: expected kind %d, got %d", i, cases[i].want, got);
    }
}

/* Every services-file key (every keyed row of core/service.c): its example value parses, changes
 * the definition from the defaults, and survives the replicated JSON form. */
static void test_services_every_key_roundtrips(void **state)
{
    (void)state;
    us_errors err;
    static us_service_def def, back;
    us_service_defaults(&def);
    us_strlcpy(def.name, "a", sizeof def.name);
    us_strlcpy(def.run, "x", sizeof def.run);
    int keys = 0;
    for (int i = 0; i < us_service_n_fields; i++) {
        const us_service_field *f = &us_service_fields[i];
        if (!f->key)
            continue;
        keys++;
        assert_non_null(f->example);
        char text[1024];
        size_t n = (size_t)snprintf(text, sizeof text, "[service a]\n");
        if (strcmp(f->key, "run") != 0)
            n += (size_t)snprintf(text + n, sizeof text - n, "run = x\n");
        if (strcmp(f->key, "standby") != 0) /* `follow` (and its timeout) only with hot */
            n += (size_t)snprintf(text + n, sizeof text - n, "standby = hot\n");
        if (f->needs) {
            const us_service_field *needs = us_service_field_by_key(f->needs);
            assert_non_null(needs);
            n += (size_t)snprintf(text + n, sizeof text - n, "%s = %s\n", needs->key,
                                  needs->example);
        }
        snprintf(text + n, sizeof text - n, "%s = %s\n", f->key, f->example);
        if (parse_svc(text, &err) != 0)
            fail_msg("key '%s': example rejected: %s", f->key, err.n ? err.msg[0] : "?");
        const us_service_def *d = &g_set.svc[0];
        if (memcmp((const char *)d + f->offset, (const char *)&def + f->offset, f->size) == 0)
            fail_msg("key '%s': the example '%s' did not change the definition", f->key,
                     f->example);
        json_t *j = us_service_def_to_json(d);
        int rc = us_service_def_from_json(&back, j);
        json_decref(j);
        if (rc != 0 || memcmp(d, &back, sizeof back) != 0)
            fail_msg("key '%s' does not survive the replicated form", f->key);
    }
    assert_true(keys > 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_valid_full),
        cmocka_unit_test(test_node_defaults),
        cmocka_unit_test(test_node_join_only),
        cmocka_unit_test(test_node_missing_file),
        cmocka_unit_test(test_node_missing_keys),
        cmocka_unit_test(test_node_key_file),
        cmocka_unit_test(test_node_unknown_section_and_key),
        cmocka_unit_test(test_node_duplicate_key),
        cmocka_unit_test(test_node_bad_names),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_node_bad_addresses),
        cmocka_unit_test(test_node_api_conflict),
        cmocka_unit_test(test_node_members_errors),
        cmocka_unit_test(test_node_unknown_profile),
        cmocka_unit_test(test_node_autopilot_grace),
        cmocka_unit_test(test_node_events_max),
        cmocka_unit_test(test_node_voter_nice),
        cmocka_unit_test(test_node_service_host),
        cmocka_unit_test(test_node_data_dir_errors),
        cmocka_unit_test(test_node_syntax_errors),
        cmocka_unit_test(test_node_many_errors_out_untouched),
        cmocka_unit_test(test_services_valid),
        cmocka_unit_test(test_services_empty),
        cmocka_unit_test(test_services_long_values),
        cmocka_unit_test(test_services_errors),
        cmocka_unit_test(test_services_unknown_key_list),
        cmocka_unit_test(test_services_too_many),
        cmocka_unit_test(test_services_many_errors_out_untouched),
        cmocka_unit_test(test_services_vip_proxy_valid),
        cmocka_unit_test(test_services_vip_proxy_defaults),
        cmocka_unit_test(test_services_vip_limits),
        cmocka_unit_test(test_services_vip_errors),
        cmocka_unit_test(test_services_proxy_errors),
        cmocka_unit_test(test_services_vip_proxy_several_errors),
        cmocka_unit_test(test_services_checks_valid),
        cmocka_unit_test(test_services_checks_defaults),
        cmocka_unit_test(test_services_check_limits),
        cmocka_unit_test(test_services_check_errors),
        cmocka_unit_test(test_services_check_several_errors),
        cmocka_unit_test(test_ini_reader),
        cmocka_unit_test(test_ini_errors_and_long_lines),
        cmocka_unit_test(test_ini_excerpt),
        cmocka_unit_test(test_errors_overflow),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_profiles),
        cmocka_unit_test(test_services_notify),
        cmocka_unit_test(test_services_privilege_valid),
        cmocka_unit_test(test_services_privilege_errors),
        cmocka_unit_test(test_node_check_creates_nothing),
        cmocka_unit_test(test_config_detect),
        cmocka_unit_test(test_services_every_key_roundtrips),
    };
    return cmocka_run_group_tests_name("config", tests, group_setup, group_teardown);
}
