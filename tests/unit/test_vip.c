/* test_vip.c — VIP parsing; then, as root, real addresses and real announcements on a veth pair
 * between two network namespaces the test creates (and that vanish with their last descriptor,
 * even if the test crashes). Addresses: 198.18.0.0/24 and 2001:db8::/32, only inside them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/if_ether.h>
#include <netinet/ip6.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "node/vip.h"

#define MS 1000000LL

static const uint8_t MAC_A[6] = {0x02, 0x00, 0x5e, 0x10, 0x00, 0x0a};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- parsing ---- */

static void test_parse_good(void **state)
{
    (void)state;
    us_vip v;
    char err[256];
    assert_int_equal(us_vip_parse("198.18.0.100/24 dev eth0", &v, err, sizeof err), 0);
    assert_int_equal(v.family, AF_INET);
    const uint8_t want4[4] = {198, 18, 0, 100};
    assert_memory_equal(v.addr, want4, 4);
    assert_int_equal(v.prefix, 24);
    assert_string_equal(v.dev, "eth0");
    assert_string_equal(v.text, "198.18.0.100/24 dev eth0");

    /* Extra blanks are fine; the text is kept in a canonical form. */
    assert_int_equal(us_vip_parse("\t 198.18.0.7/32   dev  br-lan.10 ", &v, err, sizeof err), 0);
    assert_int_equal(v.prefix, 32);
    assert_string_equal(v.dev, "br-lan.10");
    assert_string_equal(v.text, "198.18.0.7/32 dev br-lan.10");
    assert_int_equal(us_vip_parse("198.18.0.7/0 dev e", &v, err, sizeof err), 0);
    assert_int_equal(v.prefix, 0);

    assert_int_equal(us_vip_parse("2001:db8::10/64 dev eth0", &v, err, sizeof err), 0);
    assert_int_equal(v.family, AF_INET6);
    struct in6_addr a6;
    inet_pton(AF_INET6, "2001:db8::10", &a6);
    assert_memory_equal(v.addr, &a6, 16);
    assert_int_equal(v.prefix, 64);
    assert_string_equal(v.text, "2001:db8::10/64 dev eth0");
    assert_int_equal(us_vip_parse("2001:db8::10/128 dev abcdefghijklmno", &v, err, sizeof err), 0);
    assert_int_equal(v.prefix, 128);
    assert_string_equal(v.dev, "abcdefghijklmno");
}

static void test_parse_bad(void **state)
{
    (void)state;
    static const struct {
        const char *in, *msg;
    } cases[] = {
        {"198.18.0.100/33 dev eth0", "prefix 33 is out of range for IPv4 (0..32)"},
        {"2001:db8::1/129 dev eth0", "prefix 129 is out of range for IPv6 (0..128)"},
        {"198.18.0.100/24",
         "expected ADDR/PREFIX dev IFNAME (e.g. 198.18.0.100/24 dev eth0), got '198.18.0.100/24'"},
        {"198.18.0.100/24 eth0", "expected ADDR/PREFIX dev IFNAME (e.g. 198.18.0.100/24 dev "
                                 "eth0), got '198.18.0.100/24 eth0'"},
        {"198.18.0.100/24 dev eth0 extra", "got '198.18.0.100/24 dev eth0 extra'"},
        {"", "expected ADDR/PREFIX dev IFNAME (e.g. 198.18.0.100/24 dev eth0), got ''"},
        {"garbage", "got 'garbage'"},
        {"198.18.0.100 dev eth0", "'198.18.0.100' has no prefix length"},
        {"198.18.0.300/24 dev eth0", "'198.18.0.300' is not an IPv4 or IPv6 address"},
        {"eth0/24 dev eth0", "'eth0' is not an IPv4 or IPv6 address"},
        {"198.18.0.100/x dev eth0", "prefix 'x' is not a number: expected 0..32 for IPv4"},
        {"198.18.0.100/ dev eth0", "prefix '' is not a number"},
        {"198.18.0.100/-1 dev eth0", "prefix '-1' is not a number"},
        {"2001:db8::1/64x dev eth0", "prefix '64x' is not a number: expected 0..128 for IPv6"},
        {"198.18.0.100/24 dev eth0:1", "'eth0:1' is not a valid interface name"},
        {"198.18.0.100/24 dev veth0@if5", "'veth0@if5' is not a valid interface name"},
        {"198.18.0.100/24 dev abcdefghijklmnop", "is not a valid interface name: expected 1..15"},
        {"198.18.0.100/24 dev ..", "'..' is not a valid interface name"},
        {"224.0.0.18/24 dev eth0", "224.0.0.18 cannot be a virtual IP"},
        {"0.0.0.0/0 dev eth0", "cannot be a virtual IP"},
        {"ff02::1/64 dev eth0", "cannot be a virtual IP"},
        {"::1/128 dev eth0", "cannot be a virtual IP"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        us_vip v;
        char err[256] = "";
        if (us_vip_parse(cases[i].in, &v, err, sizeof err) != -EINVAL ||
            !strstr(err, cases[i].msg)) {
            print_error("'%s': got \"%s\", want \"%s\"\n", cases[i].in, err, cases[i].msg);
            fail();
        }
    }
    /* A short error buffer is truncated, never overrun; none at all is fine too. */
    us_vip v;
    char small[8];
    assert_int_equal(us_vip_parse("nonsense", &v, small, sizeof small), -EINVAL);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(us_vip_parse("nonsense", &v, NULL, 0), -EINVAL);
    assert_int_equal(us_vip_parse(NULL, &v, small, sizeof small), -EINVAL);
}

/* ---- capabilities ---- */

static int caps(struct __user_cap_data_struct d[2], bool set)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    return (int)syscall(set ? SYS_capset : SYS_capget, &h, d);
}

static void test_capable(void **state)
{
    (void)state;
    char why[512];
    if (!us_vip_capable(why, sizeof why)) {
        print_message("      not capable (%s): skipped\n", why);
        assert_non_null(strstr(why, "CAP_NET_"));
        skip();
    }
    assert_string_equal(why, "");
    struct __user_cap_data_struct saved[2], d[2];
    assert_int_equal(caps(saved, false), 0);
    memcpy(d, saved, sizeof d);
    d[0].effective &= ~CAP_TO_MASK(CAP_NET_RAW);
    assert_int_equal(caps(d, true), 0);
    bool ok = us_vip_capable(why, sizeof why);
    d[0].effective &= ~CAP_TO_MASK(CAP_NET_ADMIN);
    assert_int_equal(caps(d, true), 0);
    char why2[512];
    bool ok2 = us_vip_capable(why2, sizeof why2);
    assert_int_equal(caps(saved, true), 0); /* effective bits come back from the permitted set */
    assert_false(ok);
    assert_non_null(strstr(why, "missing CAP_NET_RAW:"));
    assert_false(ok2);
    assert_non_null(strstr(why2, "missing CAP_NET_ADMIN and CAP_NET_RAW:"));
    assert_true(us_vip_capable(why, sizeof why));
}

/* ---- the namespaces ---- */

/* ns_a holds vipa (the VIP side), ns_b holds its peer vipb (a neighbour that watches). */
static int orig_ns = -1, ns_a = -1, ns_b = -1;

static int run(int ns, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(int ns, const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (ns != ns_a && setns(ns, CLONE_NEWNET) != 0)
        return -1;
    int st = system(cmd);
    if (ns != ns_a)
        setns(ns_a, CLONE_NEWNET);
    if (st != 0)
        print_error("command failed (%d): %s\n", st, cmd);
    return st == 0 ? 0 : -1;
}

/* The output of a command run in namespace ns, NUL-terminated. */
static void output(int ns, const char *cmd, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (ns != ns_a)
        assert_int_equal(setns(ns, CLONE_NEWNET), 0);
    FILE *f = popen(cmd, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        pclose(f);
    if (ns != ns_a)
        assert_int_equal(setns(ns_a, CLONE_NEWNET), 0);
}

static bool output_has_within(int ns, const char *cmd, const char *needle, int timeout_ms)
{
    char buf[4096];
    int64_t deadline = mono_ns() + timeout_ms * MS;
    for (;;) {
        output(ns, cmd, buf, sizeof buf);
        if (strstr(buf, needle))
            return true;
        if (mono_ns() >= deadline) {
            print_error("'%s' never showed '%s'; last output:\n%s\n", cmd, needle, buf);
            return false;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int ns_teardown(void **state)
{
    (void)state;
    if (orig_ns >= 0) {
        setns(orig_ns, CLONE_NEWNET);
        close(orig_ns);
    }
    /* The last descriptors: both namespaces, and the veth pair with them, go away. */
    if (ns_a >= 0)
        close(ns_a);
    if (ns_b >= 0)
        close(ns_b);
    orig_ns = ns_a = ns_b = -1;
    return 0;
}

static int ns_setup(void **state)
{
    if (geteuid() != 0)
        return 0; /* each test skips */
    orig_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (orig_ns < 0 || unshare(CLONE_NEWNET) != 0)
        goto fail;
    ns_a = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    /* ns_b comes from a child, so that `ip ... netns PID` can name it. */
    int p[2];
    if (ns_a < 0 || pipe(p) != 0)
        goto fail;
    pid_t pid = fork();
    if (pid == 0) {
        char c = unshare(CLONE_NEWNET) == 0 ? 'k' : 'x';
        (void)!write(p[1], &c, 1);
        for (;;)
            pause(); /* until the parent has opened the namespace and kills it */
    }
    char c = 'x';
    if (pid > 0 && read(p[0], &c, 1) == 1 && c == 'k') {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
        ns_b = open(path, O_RDONLY | O_CLOEXEC);
    }
    int linked = ns_b >= 0 ? run(ns_a,
                                 "ip link add vipa address 02:00:5e:10:00:0a type veth peer name "
                                 "vipb address 02:00:5e:10:00:0b netns %d",
                                 (int)pid)
                           : -1;
    close(p[1]);
    close(p[0]);
    if (pid > 0)
        kill(pid, SIGKILL);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    if (linked != 0 || run(ns_a, "ip link set lo up && ip link set vipa up") != 0 ||
        run(ns_b, "ip link set lo up && ip link set vipb up && "
                  "ip addr add 198.18.0.2/24 dev vipb && "
                  "ip addr add 2001:db8::2/64 dev vipb nodad") != 0)
        goto fail;
    return 0;
fail:
    print_error("cannot set up the test namespaces: %s\n", strerror(errno));
    ns_teardown(state);
    return -1;
}

static void need_root(void)
{
    if (geteuid() != 0) {
        print_message("      needs root (network namespaces, netlink, packet sockets): skipped\n");
        skip();
    }
    assert_true(ns_a >= 0 && ns_b >= 0);
}

static us_vip vip(const char *text)
{
    us_vip v;
    char err[256];
    if (us_vip_parse(text, &v, err, sizeof err) != 0) {
        print_error("%s\n", err);
        fail();
    }
    return v;
}

/* ---- addresses ---- */

static void test_v4_add_present_del(void **state)
{
    (void)state;
    need_root();
    us_vip v = vip("198.18.0.100/24 dev vipa");
    char buf[4096];
    assert_true(us_vip_dev_exists(&v));
    assert_int_equal(us_vip_present(&v), 0);
    assert_int_equal(us_vip_add(&v), 0);
    assert_int_equal(us_vip_present(&v), 1);
    assert_int_equal(us_vip_add(&v), 0); /* already there: fine */
    output(ns_a, "ip -o -4 addr show dev vipa", buf, sizeof buf);
    assert_non_null(strstr(buf, "inet 198.18.0.100/24 "));
    assert_null(strstr(strstr(buf, "198.18.0.100") + 1, "198.18.0.100")); /* only once */
    /* Like `ip addr add`: the prefix route comes with it. */
    output(ns_a, "ip -4 route show dev vipa", buf, sizeof buf);
    assert_non_null(strstr(buf, "198.18.0.0/24"));
    /* ...and the neighbour's kernel resolves it: vipa's kernel answers ARP for it. */
    assert_int_equal(run(ns_b, "bash -c 'echo x >/dev/udp/198.18.0.100/9'"), 0);
    assert_true(output_has_within(ns_b, "ip neigh show 198.18.0.100 dev vipb",
                                  "lladdr 02:00:5e:10:00:0a", 2000));

    assert_int_equal(us_vip_del(&v), 0);
    assert_int_equal(us_vip_present(&v), 0);
    assert_int_equal(us_vip_del(&v), 0); /* already gone: fine */
    output(ns_a, "ip -o -4 addr show dev vipa", buf, sizeof buf);
    assert_null(strstr(buf, "198.18.0.100"));

    /* The same address with another prefix (added by hand) counts as present and is removed. */
    assert_int_equal(run(ns_a, "ip addr add 198.18.0.100/32 dev vipa"), 0);
    assert_int_equal(us_vip_present(&v), 1);
    assert_int_equal(us_vip_del(&v), 0);
    assert_int_equal(us_vip_present(&v), 0);
    /* Another address on the device is not this VIP. */
    assert_int_equal(run(ns_a, "ip addr add 198.18.0.101/24 dev vipa"), 0);
    assert_int_equal(us_vip_present(&v), 0);
    assert_int_equal(us_vip_del(&v), 0);
    output(ns_a, "ip -o -4 addr show dev vipa", buf, sizeof buf);
    assert_non_null(strstr(buf, "198.18.0.101/24"));

    /* No such device. */
    us_vip none = vip("198.18.0.100/24 dev nosuchdev0");
    assert_false(us_vip_dev_exists(&none));
    assert_int_equal(us_vip_add(&none), -ENODEV);
    assert_int_equal(us_vip_present(&none), -ENODEV);
    assert_int_equal(us_vip_announce(&none), -ENODEV);
    assert_int_equal(us_vip_del(&none), 0);
    us_vip bad = v;
    bad.prefix = 33;
    assert_int_equal(us_vip_add(&bad), -EINVAL);
}

static void test_v6_add_present_del(void **state)
{
    (void)state;
    need_root();
    us_vip v = vip("2001:db8::10/64 dev vipa");
    char buf[4096];
    assert_int_equal(us_vip_present(&v), 0);
    assert_int_equal(us_vip_add(&v), 0);
    assert_int_equal(us_vip_add(&v), 0);
    assert_int_equal(us_vip_present(&v), 1);
    /* Usable at once: no duplicate address detection, so never "tentative". */
    output(ns_a, "ip -o -6 addr show dev vipa", buf, sizeof buf);
    char *line = strstr(buf, "inet6 2001:db8::10/64 ");
    assert_non_null(line);
    char *eol = strchr(line, '\n');
    if (eol)
        *eol = '\0';
    assert_null(strstr(line, "tentative"));
    /* A tentative address would not answer neighbour solicitations. */
    assert_int_equal(run(ns_b, "bash -c 'echo x >/dev/udp/2001:db8::10/9'"), 0);
    assert_true(output_has_within(ns_b, "ip -6 neigh show 2001:db8::10 dev vipb",
                                  "lladdr 02:00:5e:10:00:0a", 2000));

    /* An IPv4 VIP with the same device does not count. */
    us_vip v4 = vip("198.18.0.100/24 dev vipa");
    assert_int_equal(us_vip_present(&v4), 0);

    assert_int_equal(us_vip_del(&v), 0);
    assert_int_equal(us_vip_present(&v), 0);
    assert_int_equal(us_vip_del(&v), 0);
    output(ns_a, "ip -o -6 addr show dev vipa", buf, sizeof buf);
    assert_null(strstr(buf, "2001:db8::10"));
    assert_int_equal(run(ns_a, "ip addr add 2001:db8::10/128 dev vipa nodad"), 0);
    assert_int_equal(us_vip_present(&v), 1);
    assert_int_equal(us_vip_del(&v), 0);
    assert_int_equal(us_vip_present(&v), 0);
}

/* ---- announcements ---- */

/* A raw packet socket on vipb, in ns_b: sees whole Ethernet frames arriving from vipa. */
static int capture_open(uint16_t proto)
{
    assert_int_equal(setns(ns_b, CLONE_NEWNET), 0);
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(proto));
    int idx = (int)if_nametoindex("vipb");
    assert_int_equal(setns(ns_a, CLONE_NEWNET), 0);
    assert_true(fd >= 0);
    assert_true(idx > 0);
    struct sockaddr_ll sll = {
        .sll_family = AF_PACKET, .sll_protocol = htons(proto), .sll_ifindex = idx};
    assert_int_equal(bind(fd, (struct sockaddr *)&sll, sizeof sll), 0);
    return fd;
}

/* The next frame within the deadline: its length, or -1. */
static int capture_next(int fd, uint8_t *buf, size_t cap, int64_t deadline)
{
    int64_t left = (deadline - mono_ns()) / MS;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (left <= 0 || poll(&pfd, 1, (int)left) != 1)
        return -1;
    ssize_t n = recv(fd, buf, cap, 0);
    return n < 0 ? -1 : (int)n;
}

static void test_announce_arp(void **state)
{
    (void)state;
    need_root();
    us_vip v = vip("198.18.0.100/24 dev vipa");
    assert_int_equal(us_vip_add(&v), 0);
    /* The neighbour knows the VIP at an old MAC, as a client would after a failover. */
    assert_int_equal(
        run(ns_b, "ip neigh replace 198.18.0.100 lladdr 02:00:5e:10:00:99 dev vipb nud stale"), 0);
    int fd = capture_open(ETH_P_ARP);
    assert_int_equal(us_vip_announce(&v), 0);

    bool seen_req = false, seen_rep = false;
    int64_t deadline = mono_ns() + 2000 * MS;
    /* 2 bytes of headroom put the network header, after the 14-byte Ethernet one, on a 4-byte
     * boundary. */
    _Alignas(8) uint8_t raw[1602];
    uint8_t *f = raw + 2;
    int n;
    while (!(seen_req && seen_rep) && (n = capture_next(fd, f, sizeof raw - 2, deadline)) >= 0) {
        const struct ether_header *eh = (const void *)f;
        const struct ether_arp *a = (const void *)(f + sizeof *eh);
        if (n < (int)(sizeof *eh + sizeof *a) || ntohs(eh->ether_type) != ETHERTYPE_ARP ||
            memcmp(eh->ether_shost, MAC_A, 6) != 0)
            continue;
        static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        static const uint8_t zero[6] = {0};
        assert_memory_equal(eh->ether_dhost, bcast, 6);
        assert_int_equal(ntohs(a->arp_hrd), ARPHRD_ETHER);
        assert_int_equal(ntohs(a->arp_pro), ETHERTYPE_IP);
        assert_int_equal(a->arp_hln, 6);
        assert_int_equal(a->arp_pln, 4);
        assert_memory_equal(a->arp_sha, MAC_A, 6);
        assert_memory_equal(a->arp_spa, v.addr, 4);
        assert_memory_equal(a->arp_tpa, v.addr, 4);
        if (ntohs(a->arp_op) == ARPOP_REQUEST) {
            assert_memory_equal(a->arp_tha, zero, 6);
            seen_req = true;
        } else {
            assert_int_equal(ntohs(a->arp_op), ARPOP_REPLY);
            assert_memory_equal(a->arp_tha, MAC_A, 6);
            seen_rep = true;
        }
    }
    close(fd);
    assert_true(seen_req);
    assert_true(seen_rep);
    /* The neighbour's kernel took it: its entry now points at vipa. */
    assert_true(output_has_within(ns_b, "ip neigh show 198.18.0.100 dev vipb",
                                  "lladdr 02:00:5e:10:00:0a", 2000));

    /* A device that is down cannot announce, and says so. */
    assert_int_equal(run(ns_a, "ip link set vipa down"), 0);
    assert_int_equal(us_vip_announce(&v), -ENETDOWN);
    assert_int_equal(us_vip_del(&v), 0);
}

/* Internet checksum over the ICMPv6 message and its pseudo-header: 0 when the packet's is right. */
static uint16_t icmp6_verify(const struct ip6_hdr *ip, const uint8_t *icmp, size_t len)
{
    uint32_t sum = 0;
    const uint8_t *src = (const uint8_t *)&ip->ip6_src;
    for (int i = 0; i < 32; i += 2) /* source and destination, contiguous */
        sum += (uint32_t)(src[i] << 8 | src[i + 1]);
    sum += (uint32_t)len;
    sum += IPPROTO_ICMPV6;
    for (size_t i = 0; i + 1 < len; i += 2)
        sum += (uint32_t)(icmp[i] << 8 | icmp[i + 1]);
    if (len & 1)
        sum += (uint32_t)icmp[len - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void test_announce_na(void **state)
{
    (void)state;
    need_root();
    us_vip v = vip("2001:db8::10/64 dev vipa");
    assert_int_equal(us_vip_add(&v), 0);
    assert_int_equal(
        run(ns_b, "ip -6 neigh replace 2001:db8::10 lladdr 02:00:5e:10:00:99 dev vipb nud stale"),
        0);
    int fd = capture_open(ETH_P_IPV6);
    assert_int_equal(us_vip_announce(&v), 0);

    bool seen = false;
    int64_t deadline = mono_ns() + 2000 * MS;
    /* 2 bytes of headroom put the network header, after the 14-byte Ethernet one, on a 4-byte
     * boundary. */
    _Alignas(8) uint8_t raw[1602];
    uint8_t *f = raw + 2;
    int n;
    while (!seen && (n = capture_next(fd, f, sizeof raw - 2, deadline)) >= 0) {
        const struct ether_header *eh = (const void *)f;
        const struct ip6_hdr *ip = (const void *)(f + sizeof *eh);
        const struct nd_neighbor_advert *na = (const void *)(ip + 1);
        if (n < (int)(sizeof *eh + sizeof *ip + sizeof *na) ||
            memcmp(eh->ether_shost, MAC_A, 6) != 0 || ip->ip6_nxt != IPPROTO_ICMPV6 ||
            na->nd_na_type != ND_NEIGHBOR_ADVERT)
            continue;
        static const uint8_t all_nodes_mac[6] = {0x33, 0x33, 0, 0, 0, 1};
        struct in6_addr all_nodes;
        inet_pton(AF_INET6, "ff02::1", &all_nodes);
        assert_memory_equal(eh->ether_dhost, all_nodes_mac, 6);
        assert_int_equal(ip->ip6_hlim, 255);
        assert_memory_equal(&ip->ip6_dst, &all_nodes, 16);
        assert_memory_equal(&ip->ip6_src, v.addr, 16);
        size_t plen = ntohs(ip->ip6_plen);
        assert_int_equal(plen, sizeof *na + 8);
        assert_true(n >= (int)(sizeof *eh + sizeof *ip + plen));
        assert_int_equal(na->nd_na_code, 0);
        assert_memory_equal(&na->nd_na_target, v.addr, 16);
        assert_true(na->nd_na_flags_reserved & ND_NA_FLAG_OVERRIDE);
        assert_false(na->nd_na_flags_reserved & ND_NA_FLAG_SOLICITED);
        assert_false(na->nd_na_flags_reserved & ND_NA_FLAG_ROUTER); /* not forwarding here */
        const uint8_t *opt = (const uint8_t *)(na + 1);
        assert_int_equal(opt[0], ND_OPT_TARGET_LINKADDR);
        assert_int_equal(opt[1], 1);
        assert_memory_equal(opt + 2, MAC_A, 6);
        assert_int_equal(icmp6_verify(ip, (const uint8_t *)na, plen), 0);
        seen = true;
    }
    close(fd);
    assert_true(seen);
    assert_true(output_has_within(ns_b, "ip -6 neigh show 2001:db8::10 dev vipb",
                                  "lladdr 02:00:5e:10:00:0a", 2000));

    /* A forwarding node says it is a router. */
    assert_int_equal(run(ns_a, "sysctl -qw net.ipv6.conf.vipa.forwarding=1"), 0);
    fd = capture_open(ETH_P_IPV6);
    assert_int_equal(us_vip_announce(&v), 0);
    seen = false;
    deadline = mono_ns() + 2000 * MS;
    while (!seen && (n = capture_next(fd, f, sizeof raw - 2, deadline)) >= 0) {
        const struct ip6_hdr *ip = (const void *)(f + sizeof(struct ether_header));
        const struct nd_neighbor_advert *na = (const void *)(ip + 1);
        if (n >= (int)(sizeof(struct ether_header) + sizeof *ip + sizeof *na) &&
            ip->ip6_nxt == IPPROTO_ICMPV6 && na->nd_na_type == ND_NEIGHBOR_ADVERT &&
            memcmp(&na->nd_na_target, v.addr, 16) == 0) {
            assert_true(na->nd_na_flags_reserved & ND_NA_FLAG_ROUTER);
            assert_int_equal(icmp6_verify(ip, (const uint8_t *)na, ntohs(ip->ip6_plen)), 0);
            seen = true;
        }
    }
    close(fd);
    assert_true(seen);
    assert_int_equal(us_vip_del(&v), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_capable),
        cmocka_unit_test_setup_teardown(test_v4_add_present_del, ns_setup, ns_teardown),
        cmocka_unit_test_setup_teardown(test_v6_add_present_del, ns_setup, ns_teardown),
        cmocka_unit_test_setup_teardown(test_announce_arp, ns_setup, ns_teardown),
        cmocka_unit_test_setup_teardown(test_announce_na, ns_setup, ns_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
