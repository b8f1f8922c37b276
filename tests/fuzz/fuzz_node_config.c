/* fuzz_node_config.c — the node configuration parser (us_config_parse_node_text: the INI reader,
 * every [node] / [cluster] key and the cross checks; nothing is created).
 *
 * key_file is read like in us_config_load_node. So that inputs can also pass that check, the
 * harness writes a valid key file (mode 0600) at FUZZ_KEY_FILE, the path the seeds name; any
 * other path fails as it would for a user. */
#include "fuzz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/key.h"
#include "lib/log.h"
#include "lib/hostport.h"

#define FUZZ_KEY_DIR "/tmp/understudy-fuzz"
#define FUZZ_KEY_FILE FUZZ_KEY_DIR "/cluster.key"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    us_log_init("fuzz", -1);
    if (us_crypto_init() != 0)
        abort();
    mkdir(FUZZ_KEY_DIR, 0700);
    /* Written under a private name, then renamed: parallel fuzzers never see half a file. */
    char tmp[64];
    snprintf(tmp, sizeof tmp, FUZZ_KEY_DIR "/.key.%d", (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    static const char key[] =
        "# fuzz key\n000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    if (fd < 0 || write(fd, key, sizeof key - 1) != (ssize_t)(sizeof key - 1) || close(fd) != 0 ||
        rename(tmp, FUZZ_KEY_FILE) != 0) {
        perror("fuzz_node_config: cannot write " FUZZ_KEY_FILE);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static us_errors err;
    static us_node_config out;
    char *text = fuzz_copy(data, size);
    memset(&err, 0, sizeof err);
    memset(&out, 0xA5, sizeof out); /* "untouched on failure" is checked against this */
    int rc = us_config_parse_node_text(text, size, "fuzz.conf", &out, &err);
    if (rc == 0) {
        FUZZ_CHECK(err.n == 0 && err.dropped == 0);
        FUZZ_CHECK(us_name_valid(out.name));
        FUZZ_CHECK(us_name_valid(out.cluster_name));
        FUZZ_CHECK(out.n_members >= 0 && out.n_members <= US_MAX_NODES);
        FUZZ_CHECK(out.n_join >= 0 && out.n_join <= US_MAX_NODES);
        FUZZ_CHECK(out.n_members > 0 || out.n_join > 0);
        FUZZ_CHECK(out.keys.n >= 1 && out.keys.n <= US_KEYS_MAX);
        FUZZ_CHECK(memchr(out.data_dir, '\0', sizeof out.data_dir) != NULL);
        char host[16];
        int port;
        FUZZ_CHECK(us_parse_hostport(out.address, host, sizeof host, &port) == 0);
        FUZZ_CHECK(us_parse_hostport(out.api, host, sizeof host, &port) == 0);
        for (int i = 0; i < out.n_members; i++)
            FUZZ_CHECK(us_name_valid(out.members[i].name));
        FUZZ_CHECK(out.timing.heartbeat_ms > 0 && out.autopilot_grace_ms >= 0);
        FUZZ_CHECK(out.events_max >= US_EVENTS_MIN && out.events_max <= US_EVENTS_LIMIT);
    } else {
        FUZZ_CHECK(rc == -1 && err.n > 0);
        for (int i = 0; i < err.n; i++) /* the API and check-config --json send them as JSON */
            FUZZ_UTF8(err.msg[i]);
        static us_node_config pristine;
        memset(&pristine, 0xA5, sizeof pristine);
        FUZZ_CHECK(memcmp(&out, &pristine, sizeof out) == 0);
    }
    us_keyring_wipe(&out.keys);
    free(text);
    return 0;
}
