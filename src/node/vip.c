/* vip.c — see vip.h.
 *
 * Netlink goes through a socket opened per call (not mnl_socket_open, which allocates): libmnl only
 * builds and parses the messages, in stack buffers. The guardian calls us_vip_del after fork, so
 * nothing here may allocate or keep state between calls.
 *
 * "Present" means the address is on the device with any prefix length, and us_vip_del removes it
 * whatever its prefix: an address left over with another prefix (added by hand, say) still makes
 * this node answer ARP for the VIP, which is what must not happen on a node that is not active.
 */
#include "node/vip.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/capability.h>
#include <linux/if_packet.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/if_ether.h>
#include <netinet/in.h>
#include <netinet/ip6.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* A dump datagram never exceeds 32 KiB (the kernel sizes dump skbs by the reader's buffer, capped
 * there); add/del answers are far smaller. */
#define NL_BUF 32768
#define NL_REQ 256
/* Deleting an address with another prefix, then looking again: bounded. */
#define DEL_ROUNDS 4

static size_t alen(const us_vip *v)
{
    return v->family == AF_INET ? 4 : 16;
}

static bool vip_ok(const us_vip *v)
{
    if (v->family == AF_INET)
        return v->prefix >= 0 && v->prefix <= 32 && v->dev[0];
    if (v->family == AF_INET6)
        return v->prefix >= 0 && v->prefix <= 128 && v->dev[0];
    return false;
}

/* ifindex of the VIP's device, or -errno (-ENODEV when there is no such device). */
static int dev_index(const us_vip *v)
{
    if (!memchr(v->dev, '\0', sizeof v->dev))
        return -EINVAL;
    unsigned idx = if_nametoindex(v->dev);
    if (idx)
        return (int)idx;
    return errno == ENXIO || errno == ENODEV || errno == 0 ? -ENODEV : -errno;
}

/* ---- netlink ---- */

/* Send one request and run cb over the answer until the kernel's ACK or NLMSG_DONE, or until cb
 * returns MNL_CB_STOP. 0 or -errno (the kernel's error for a failed request). */
static int nl_request(struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    /* The kernel answers at once; a bound keeps a wedged kernel from wedging the guardian. */
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* Lets the kernel filter address dumps by ifindex (older kernels ignore it; cb filters). */
    int one = 1;
    setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);

    const uint32_t seq = 1; /* a fresh socket per request: nothing else to tell apart */
    nlh->nlmsg_seq = seq;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    int rc = 0;
    if (sendto(fd, nlh, nlh->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        rc = -errno;
        goto out;
    }
    _Alignas(struct nlmsghdr) char buf[NL_BUF];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_TRUNC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
            break;
        }
        if ((size_t)n > sizeof buf) {
            rc = -EMSGSIZE;
            break;
        }
        errno = 0;
        int r = mnl_cb_run(buf, (size_t)n, seq, 0, cb, data);
        if (r == MNL_CB_ERROR) {
            rc = errno ? -errno : -EIO;
            break;
        }
        if (r == MNL_CB_STOP)
            break;
    }
out:
    close(fd);
    return rc;
}

static struct nlmsghdr *addr_msg(char *buf, uint16_t type, uint16_t flags, const us_vip *v,
                                 int ifindex, int prefix)
{
    memset(buf, 0, NL_REQ);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
    ifa->ifa_family = (uint8_t)v->family;
    ifa->ifa_index = (uint32_t)ifindex;
    if (type == RTM_GETADDR)
        return nlh; /* a dump filter: strict checking wants every other field zero */
    ifa->ifa_prefixlen = (uint8_t)prefix;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    /* Duplicate address detection would keep a new IPv6 VIP "tentative", unusable, for a
     * second or more; the cluster already guarantees that only one node holds it. */
    if (type == RTM_NEWADDR && v->family == AF_INET6)
        ifa->ifa_flags = IFA_F_NODAD;
    mnl_attr_put(nlh, IFA_LOCAL, alen(v), v->addr);
    mnl_attr_put(nlh, IFA_ADDRESS, alen(v), v->addr);
    return nlh;
}

typedef struct find_ctx {
    const us_vip *v;
    int ifindex;
    int prefix; /* of the address found, or -1 */
} find_ctx;

static int find_cb(const struct nlmsghdr *nlh, void *data)
{
    find_ctx *c = data;
    if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifaddrmsg))
        return MNL_CB_OK;
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    if ((int)ifa->ifa_index != c->ifindex || ifa->ifa_family != c->v->family)
        return MNL_CB_OK;
    const void *local = NULL, *address = NULL;
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof *ifa)
    {
        if (mnl_attr_get_payload_len(a) != alen(c->v))
            continue;
        if (mnl_attr_get_type(a) == IFA_LOCAL)
            local = mnl_attr_get_payload(a);
        else if (mnl_attr_get_type(a) == IFA_ADDRESS)
            address = mnl_attr_get_payload(a);
    }
    /* IFA_ADDRESS is the peer on point-to-point links; IPv6 sends IFA_LOCAL only then. */
    const void *own = local ? local : address;
    if (own && memcmp(own, c->v->addr, alen(c->v)) == 0) {
        c->prefix = ifa->ifa_prefixlen;
        return MNL_CB_STOP;
    }
    return MNL_CB_OK;
}

/* 1 with *prefix set if the address is on the device, 0 if not, -errno. */
static int find_addr(const us_vip *v, int ifindex, int *prefix)
{
    char req[NL_REQ] __attribute__((aligned(4)));
    struct nlmsghdr *nlh = addr_msg(req, RTM_GETADDR, NLM_F_DUMP, v, ifindex, 0);
    find_ctx c = {.v = v, .ifindex = ifindex, .prefix = -1};
    int rc = nl_request(nlh, find_cb, &c);
    if (rc < 0)
        return rc;
    *prefix = c.prefix;
    return c.prefix >= 0;
}

int us_vip_add(const us_vip *v)
{
    if (!vip_ok(v))
        return -EINVAL;
    int idx = dev_index(v);
    if (idx < 0)
        return idx;
    char req[NL_REQ] __attribute__((aligned(4)));
    struct nlmsghdr *nlh =
        addr_msg(req, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, v, idx, v->prefix);
    int rc = nl_request(nlh, NULL, NULL);
    return rc == -EEXIST ? 0 : rc;
}

static bool gone_error(int rc)
{
    return rc == -EADDRNOTAVAIL || rc == -ENOENT || rc == -ENODEV;
}

int us_vip_del(const us_vip *v)
{
    if (!vip_ok(v))
        return -EINVAL;
    int idx = dev_index(v);
    if (idx < 0)
        return idx == -ENODEV ? 0 : idx; /* no device, no address */
    int prefix = v->prefix;
    for (int round = 0; round < DEL_ROUNDS; round++) {
        char req[NL_REQ] __attribute__((aligned(4)));
        struct nlmsghdr *nlh = addr_msg(req, RTM_DELADDR, NLM_F_ACK, v, idx, prefix);
        int rc = nl_request(nlh, NULL, NULL);
        if (rc < 0 && !gone_error(rc))
            return rc;
        rc = find_addr(v, idx, &prefix);
        if (rc <= 0)
            return rc == -ENODEV ? 0 : rc;
    }
    return -EBUSY;
}

int us_vip_present(const us_vip *v)
{
    if (!vip_ok(v))
        return -EINVAL;
    int idx = dev_index(v);
    if (idx < 0)
        return idx;
    int prefix;
    return find_addr(v, idx, &prefix);
}

bool us_vip_dev_exists(const us_vip *v)
{
    return dev_index(v) > 0;
}

/* ---- announcements ---- */

static uint32_t sum16(uint32_t sum, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (; len > 1; p += 2, len -= 2)
        sum += (uint32_t)(p[0] << 8 | p[1]);
    if (len)
        sum += (uint32_t)p[0] << 8;
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return htons((uint16_t)~sum);
}

typedef struct __attribute__((packed)) na_packet {
    struct ip6_hdr ip;
    struct nd_neighbor_advert na;
    struct nd_opt_hdr opt;
    uint8_t lladdr[ETH_ALEN];
} na_packet;

/* A router must say so in its advertisements, or hosts drop it from their default routers. */
static bool ipv6_forwarding(const char *dev)
{
    char path[96], c = '0';
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/forwarding", dev);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    if (read(fd, &c, 1) != 1)
        c = '0';
    close(fd);
    return c == '1';
}

static int send_frame(int fd, int ifindex, uint16_t proto, const uint8_t *dst, const void *frame,
                      size_t len)
{
    struct sockaddr_ll to = {.sll_family = AF_PACKET,
                             .sll_protocol = htons(proto),
                             .sll_ifindex = ifindex,
                             .sll_halen = ETH_ALEN};
    memcpy(to.sll_addr, dst, ETH_ALEN);
    ssize_t n;
    do
        n = sendto(fd, frame, len, 0, (struct sockaddr *)&to, sizeof to);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

static int announce_v4(int fd, int ifindex, const uint8_t *mac, const us_vip *v)
{
    static const uint8_t bcast[ETH_ALEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    struct ether_arp arp;
    memset(&arp, 0, sizeof arp);
    arp.arp_hrd = htons(ARPHRD_ETHER);
    arp.arp_pro = htons(ETHERTYPE_IP);
    arp.arp_hln = ETH_ALEN;
    arp.arp_pln = 4;
    memcpy(arp.arp_sha, mac, ETH_ALEN);
    memcpy(arp.arp_spa, v->addr, 4);
    memcpy(arp.arp_tpa, v->addr, 4);
    /* Hosts differ in which form updates their cache: send both. The request's target hardware
     * address is zero (RFC 5227 announcement); the reply's is our own, as `arping -A` sends. */
    arp.arp_op = htons(ARPOP_REQUEST);
    int rc = send_frame(fd, ifindex, ETH_P_ARP, bcast, &arp, sizeof arp);
    if (rc < 0)
        return rc;
    arp.arp_op = htons(ARPOP_REPLY);
    memcpy(arp.arp_tha, mac, ETH_ALEN);
    return send_frame(fd, ifindex, ETH_P_ARP, bcast, &arp, sizeof arp);
}

static int announce_v6(int fd, int ifindex, const uint8_t *mac, const us_vip *v)
{
    static const uint8_t all_nodes_mac[ETH_ALEN] = {0x33, 0x33, 0, 0, 0, 1};
    na_packet p;
    memset(&p, 0, sizeof p);
    p.ip.ip6_flow = htonl(6u << 28);
    p.ip.ip6_plen = htons(sizeof p - sizeof p.ip);
    p.ip.ip6_nxt = IPPROTO_ICMPV6;
    p.ip.ip6_hlim = 255; /* receivers drop ND packets that crossed a router */
    memcpy(&p.ip.ip6_src, v->addr, 16);
    inet_pton(AF_INET6, "ff02::1", &p.ip.ip6_dst);
    p.na.nd_na_type = ND_NEIGHBOR_ADVERT;
    p.na.nd_na_code = 0;
    p.na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
    if (ipv6_forwarding(v->dev))
        p.na.nd_na_flags_reserved |= ND_NA_FLAG_ROUTER;
    memcpy(&p.na.nd_na_target, v->addr, 16);
    p.opt.nd_opt_type = ND_OPT_TARGET_LINKADDR;
    p.opt.nd_opt_len = 1; /* in units of 8 bytes */
    memcpy(p.lladdr, mac, ETH_ALEN);

    const size_t icmp_len = sizeof p - sizeof p.ip;
    const uint8_t pseudo_tail[8] = {
        0, 0, (uint8_t)(icmp_len >> 8), (uint8_t)icmp_len, 0, 0, 0, IPPROTO_ICMPV6};
    uint32_t sum = sum16(0, &p.ip.ip6_src, 16);
    sum = sum16(sum, &p.ip.ip6_dst, 16);
    sum = sum16(sum, pseudo_tail, sizeof pseudo_tail);
    sum = sum16(sum, &p.na, icmp_len);
    p.na.nd_na_cksum = fold(sum);
    return send_frame(fd, ifindex, ETH_P_IPV6, all_nodes_mac, &p, sizeof p);
}

int us_vip_announce(const us_vip *v)
{
    if (!vip_ok(v))
        return -EINVAL;
    int idx = dev_index(v);
    if (idx < 0)
        return idx;
    /* Protocol 0: this socket only sends, nothing is queued to it. */
    int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, v->dev,
           sizeof ifr.ifr_name < sizeof v->dev ? sizeof ifr.ifr_name : sizeof v->dev);
    ifr.ifr_name[sizeof ifr.ifr_name - 1] = '\0';
    int rc = 0;
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
        rc = -errno;
        goto out;
    }
    if (ifr.ifr_flags & IFF_NOARP)
        goto out; /* no ARP or neighbour discovery on this link: nothing to update */
    if (!(ifr.ifr_flags & IFF_UP)) {
        rc = -ENETDOWN;
        goto out;
    }
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
        rc = -errno;
        goto out;
    }
    if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
        rc = -EOPNOTSUPP;
        goto out;
    }
    uint8_t mac[ETH_ALEN];
    memcpy(mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
    rc = v->family == AF_INET ? announce_v4(fd, idx, mac, v) : announce_v6(fd, idx, mac, v);
out:
    close(fd);
    return rc;
}

/* ---- capabilities ---- */

bool us_vip_capable(char *why, size_t len)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0) {
        if (len)
            snprintf(why, len, "cannot read this process's capabilities: %s", strerror(errno));
        return false;
    }
    bool admin = data[CAP_TO_INDEX(CAP_NET_ADMIN)].effective & CAP_TO_MASK(CAP_NET_ADMIN);
    bool raw = data[CAP_TO_INDEX(CAP_NET_RAW)].effective & CAP_TO_MASK(CAP_NET_RAW);
    if (admin && raw) {
        if (len)
            why[0] = '\0';
        return true;
    }
    if (len)
        snprintf(why, len,
                 "missing %s%s%s: virtual IPs are added through netlink (CAP_NET_ADMIN) and "
                 "announced from a packet socket (CAP_NET_RAW); run as root or grant them "
                 "(systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)",
                 admin ? "" : "CAP_NET_ADMIN", !admin && !raw ? " and " : "",
                 raw ? "" : "CAP_NET_RAW");
    return false;
}

/* ---- parsing ---- */

#define SHAPE "expected ADDR/PREFIX dev IFNAME (e.g. 198.18.0.100/24 dev eth0)"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Split into at most 4 whitespace-separated words (a 4th means too many); returns the count. */
static int split(const char *text, char words[4][64], bool *too_long)
{
    int n = 0;
    *too_long = false;
    const char *p = text;
    while (n < 4) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        size_t k = 0;
        while (*p && !isspace((unsigned char)*p)) {
            if (k + 1 < sizeof words[n])
                words[n][k++] = *p;
            else
                *too_long = true;
            p++;
        }
        words[n++][k] = '\0';
    }
    return n;
}

static bool ifname_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-';
}

int us_vip_parse(const char *text, us_vip *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!text)
        text = "";
    char w[4][64];
    bool too_long;
    int n = split(text, w, &too_long);
    if (n != 3 || too_long || strcmp(w[1], "dev") != 0)
        return fail(err, errlen, SHAPE ", got '%.100s'", text);

    char *slash = strchr(w[0], '/');
    if (!slash)
        return fail(err, errlen, "'%s' has no prefix length: " SHAPE, w[0]);
    *slash = '\0';
    const char *addr = w[0], *pfx = slash + 1;
    if (inet_pton(AF_INET, addr, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, addr, out->addr) == 1)
        out->family = AF_INET6;
    else
        return fail(err, errlen, "'%s' is not an IPv4 or IPv6 address: " SHAPE, addr);
    const bool v4 = out->family == AF_INET;
    const int max = v4 ? 32 : 128;
    const char *fam = v4 ? "IPv4" : "IPv6";

    size_t digits = strspn(pfx, "0123456789");
    if (!*pfx || pfx[digits] || digits > 3)
        return fail(err, errlen, "prefix '%s' is not a number: expected 0..%d for %s", pfx, max,
                    fam);
    out->prefix = atoi(pfx);
    if (out->prefix > max)
        return fail(err, errlen, "prefix %d is out of range for %s (0..%d)", out->prefix, fam, max);

    const uint8_t *a = out->addr;
    bool unusable;
    if (v4)
        unusable = a[0] == 0 || a[0] == 127 || a[0] >= 224; /* this-net, loopback, multicast+ */
    else
        unusable = a[0] == 0xff ||                                 /* multicast */
                   (memcmp(a, in6addr_any.s6_addr, 16) == 0) ||    /* :: */
                   (memcmp(a, in6addr_loopback.s6_addr, 16) == 0); /* ::1 */
    if (unusable)
        return fail(err, errlen,
                    "%s cannot be a virtual IP (unspecified, loopback, multicast or reserved)",
                    addr);

    const char *dev = w[2];
    size_t dl = strlen(dev);
    bool dev_ok = dl > 0 && dl < US_IFNAME_MAX && strcmp(dev, ".") != 0 && strcmp(dev, "..") != 0;
    for (size_t i = 0; dev_ok && i < dl; i++)
        dev_ok = ifname_char(dev[i]);
    if (!dev_ok)
        return fail(err, errlen,
                    "'%s' is not a valid interface name: expected 1..%d of letters, digits, "
                    "'.', '_', '-' (no alias labels like eth0:1, no '@peer' suffix)",
                    dev, US_IFNAME_MAX - 1);
    memcpy(out->dev, dev, dl + 1);
    /* Valid addresses fit INET6_ADDRSTRLEN: "%.45s" only tells the compiler so. */
    snprintf(out->text, sizeof out->text, "%.45s/%d dev %s", addr, out->prefix, out->dev);
    return 0;
}
