/* bench_tui.c: the studio driven through a pseudo-terminal. By default a benchmark (make
 * bench): the time from writing a tab key to the new screen being on the terminal, with no
 * job and while a real job keeps the worker busy. With --test-mouse, end-to-end mouse checks
 * (xterm SGR clicks on tabs, rows and footer keys). A small terminal emulator keeps the
 * screen the program drew, so every wait looks at what a user would see. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#define TERM_ROWS 30
#define TERM_COLS 100
#define CELL_BYTES 8            /* one character, UTF-8, NUL-terminated */
#define WAIT_S 20.0             /* default patience for what the studio should show */
#define KEY_TIMEOUT_S 5.0       /* a benchmark sample slower than this counts as lost */
#define MAX_SAMPLES 1000

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- a terminal emulator: the xterm subset ncurses uses for xterm-256color --------------- */

enum { VT_GROUND, VT_ESC, VT_CSI, VT_OSC, VT_OSC_ESC, VT_SKIP1 };

typedef struct vt {
	int rows, cols;
	int y, x;                 /* the cursor, 0-based */
	bool wrap_pending;        /* the last column was written: the next character wraps */
	int top, bottom;          /* the scrolling region, inclusive */
	int saved_y, saved_x;
	char (*cells)[CELL_BYTES];  /* [rows * cols]; "" is the right half of a wide character */
	int state;
	char seq[64];             /* CSI parameters and intermediates so far */
	size_t n_seq;
	unsigned char utf[4];     /* a UTF-8 sequence being collected */
	int utf_have, utf_need;
	char last[CELL_BYTES];    /* the last character printed (for REP) */
} vt;

static bool vt_init(vt *v, int rows, int cols)
{
	memset(v, 0, sizeof *v);
	v->rows = rows;
	v->cols = cols;
	v->bottom = rows - 1;
	v->cells = calloc((size_t)rows * (size_t)cols, CELL_BYTES);
	if (!v->cells)
		return false;
	for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++)
		strcpy(v->cells[i], " ");
	return true;
}

static char *vt_cell(vt *v, int y, int x)
{
	return v->cells[(size_t)y * (size_t)v->cols + (size_t)x];
}

static void vt_blank(vt *v, int y, int x0, int x1)
{
	for (int x = x0; x < x1 && x < v->cols; x++)
		if (x >= 0)
			strcpy(vt_cell(v, y, x), " ");
}

/* scrolls lines top..bottom up (n > 0) or down (n < 0) by |n| */
static void vt_scroll(vt *v, int top, int bottom, int n)
{
	size_t row = (size_t)v->cols * CELL_BYTES;
	int h = bottom - top + 1;
	if (n > h)
		n = h;
	if (n < -h)
		n = -h;
	if (n > 0) {
		memmove(vt_cell(v, top, 0), vt_cell(v, top + n, 0), (size_t)(h - n) * row);
		for (int y = bottom - n + 1; y <= bottom; y++)
			vt_blank(v, y, 0, v->cols);
	} else if (n < 0) {
		n = -n;
		memmove(vt_cell(v, top + n, 0), vt_cell(v, top, 0), (size_t)(h - n) * row);
		for (int y = top; y < top + n; y++)
			vt_blank(v, y, 0, v->cols);
	}
}

static void vt_linefeed(vt *v)
{
	if (v->y == v->bottom)
		vt_scroll(v, v->top, v->bottom, 1);
	else if (v->y < v->rows - 1)
		v->y++;
}

static void vt_clamp(vt *v)
{
	if (v->y < 0)
		v->y = 0;
	if (v->y >= v->rows)
		v->y = v->rows - 1;
	if (v->x < 0)
		v->x = 0;
	if (v->x >= v->cols)
		v->x = v->cols - 1;
	v->wrap_pending = false;
}

static void vt_print(vt *v, const char *ch)
{
	wchar_t wc = 0;
	mbstate_t st;
	memset(&st, 0, sizeof st);
	int w = 1;
	if (mbrtowc(&wc, ch, strlen(ch), &st) < (size_t)-2) {
		w = wcwidth(wc);
		if (w < 0)
			w = 1;
	}
	if (w == 0)
		return; /* combining marks: not used by the studio */
	if (v->wrap_pending || v->x + w > v->cols) {
		v->x = 0;
		vt_linefeed(v);
		v->wrap_pending = false;
	}
	snprintf(vt_cell(v, v->y, v->x), CELL_BYTES, "%s", ch);
	if (w == 2 && v->x + 1 < v->cols)
		vt_cell(v, v->y, v->x + 1)[0] = '\0';
	snprintf(v->last, sizeof v->last, "%s", ch);
	if (v->x + w >= v->cols) {
		v->x = v->cols - 1;
		v->wrap_pending = true;
	} else {
		v->x += w;
	}
}

/* the n-th numeric CSI parameter, or def when absent or 0 (where 0 means the default) */
static int vt_param(const int *p, int n_p, int i, int def)
{
	return i < n_p && p[i] > 0 ? p[i] : def;
}

static void vt_csi(vt *v, char final)
{
	int p[16] = {0}, n_p = 0;
	bool private_mode = false;
	size_t i = 0;
	if (v->n_seq && strchr("?>=<", v->seq[0])) {
		private_mode = true;
		i = 1;
	}
	for (; i < v->n_seq; i++) {
		char c = v->seq[i];
		if (c >= '0' && c <= '9') {
			if (n_p == 0)
				n_p = 1;
			if (p[n_p - 1] < 100000)
				p[n_p - 1] = p[n_p - 1] * 10 + (c - '0');
		} else if (c == ';' || c == ':') {
			if (n_p == 0)
				n_p = 1;
			if (n_p < 16)
				n_p++;
		} else {
			return; /* intermediates: nothing ncurses sends that moves or draws */
		}
	}
	if (private_mode)
		return; /* modes (?1049h, ?1006h, ...): the screen is unaffected here */
	int n = vt_param(p, n_p, 0, 1);
	switch (final) {
	case 'A': v->y -= n; if (v->y < v->top && v->y + n >= v->top) v->y = v->top; vt_clamp(v); break;
	case 'B': v->y += n; if (v->y > v->bottom && v->y - n <= v->bottom) v->y = v->bottom; vt_clamp(v); break;
	case 'C': v->x += n; vt_clamp(v); break;
	case 'D': v->x -= n; vt_clamp(v); break;
	case 'E': v->y += n; v->x = 0; vt_clamp(v); break;
	case 'F': v->y -= n; v->x = 0; vt_clamp(v); break;
	case 'G': case '`': v->x = n - 1; vt_clamp(v); break;
	case 'd': v->y = n - 1; vt_clamp(v); break;
	case 'H': case 'f':
		v->y = vt_param(p, n_p, 0, 1) - 1;
		v->x = vt_param(p, n_p, 1, 1) - 1;
		vt_clamp(v);
		break;
	case 'J': {
		int mode = n_p ? p[0] : 0;
		if (mode == 0) {
			vt_blank(v, v->y, v->x, v->cols);
			for (int y = v->y + 1; y < v->rows; y++)
				vt_blank(v, y, 0, v->cols);
		} else if (mode == 1) {
			for (int y = 0; y < v->y; y++)
				vt_blank(v, y, 0, v->cols);
			vt_blank(v, v->y, 0, v->x + 1);
		} else {
			for (int y = 0; y < v->rows; y++)
				vt_blank(v, y, 0, v->cols);
		}
		break;
	}
	case 'K': {
		int mode = n_p ? p[0] : 0;
		if (mode == 0)
			vt_blank(v, v->y, v->x, v->cols);
		else if (mode == 1)
			vt_blank(v, v->y, 0, v->x + 1);
		else
			vt_blank(v, v->y, 0, v->cols);
		break;
	}
	case 'X': vt_blank(v, v->y, v->x, v->x + n); break;
	case '@': {
		if (n > v->cols - v->x)
			n = v->cols - v->x;
		memmove(vt_cell(v, v->y, v->x + n), vt_cell(v, v->y, v->x),
			(size_t)(v->cols - v->x - n) * CELL_BYTES);
		vt_blank(v, v->y, v->x, v->x + n);
		break;
	}
	case 'P': {
		if (n > v->cols - v->x)
			n = v->cols - v->x;
		memmove(vt_cell(v, v->y, v->x), vt_cell(v, v->y, v->x + n),
			(size_t)(v->cols - v->x - n) * CELL_BYTES);
		vt_blank(v, v->y, v->cols - n, v->cols);
		break;
	}
	case 'L': if (v->y >= v->top && v->y <= v->bottom) vt_scroll(v, v->y, v->bottom, -n); break;
	case 'M': if (v->y >= v->top && v->y <= v->bottom) vt_scroll(v, v->y, v->bottom, n); break;
	case 'S': vt_scroll(v, v->top, v->bottom, n); break;
	case 'T': vt_scroll(v, v->top, v->bottom, -n); break;
	case 'b':
		for (int k = 0; k < n && v->last[0]; k++)
			vt_print(v, v->last);
		break;
	case 'r':
		v->top = vt_param(p, n_p, 0, 1) - 1;
		v->bottom = vt_param(p, n_p, 1, v->rows) - 1;
		if (v->top < 0 || v->bottom >= v->rows || v->top >= v->bottom) {
			v->top = 0;
			v->bottom = v->rows - 1;
		}
		v->y = v->x = 0;
		v->wrap_pending = false;
		break;
	case 's': v->saved_y = v->y; v->saved_x = v->x; break;
	case 'u': v->y = v->saved_y; v->x = v->saved_x; vt_clamp(v); break;
	default: break; /* m (colours), h/l, t, n, c: nothing on the screen's text */
	}
}

static void vt_esc(vt *v, char c)
{
	v->state = VT_GROUND;
	switch (c) {
	case '[': v->state = VT_CSI; v->n_seq = 0; break;
	case ']': case 'P': case '_': case '^': v->state = VT_OSC; break;
	case '(': case ')': case '*': case '+': case '#': case '%': v->state = VT_SKIP1; break;
	case '7': v->saved_y = v->y; v->saved_x = v->x; break;
	case '8': v->y = v->saved_y; v->x = v->saved_x; vt_clamp(v); break;
	case 'D': vt_linefeed(v); break;
	case 'E': v->x = 0; vt_linefeed(v); break;
	case 'M':
		if (v->y == v->top)
			vt_scroll(v, v->top, v->bottom, -1);
		else if (v->y > 0)
			v->y--;
		break;
	case 'c': {
		int rows = v->rows, cols = v->cols;
		char (*cells)[CELL_BYTES] = v->cells;
		memset(v, 0, sizeof *v);
		v->rows = rows;
		v->cols = cols;
		v->bottom = rows - 1;
		v->cells = cells;
		for (int y = 0; y < rows; y++)
			vt_blank(v, y, 0, cols);
		break;
	}
	default: break; /* = > and the like */
	}
}

static void vt_feed(vt *v, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];
		switch (v->state) {
		case VT_ESC:
			vt_esc(v, (char)c);
			continue;
		case VT_CSI:
			if (c >= 0x40 && c <= 0x7e) {
				vt_csi(v, (char)c);
				v->state = VT_GROUND;
			} else if (c == 0x1b) {
				v->state = VT_ESC;
			} else if (v->n_seq + 1 < sizeof v->seq) {
				v->seq[v->n_seq++] = (char)c;
			}
			continue;
		case VT_OSC:
			if (c == 0x07)
				v->state = VT_GROUND;
			else if (c == 0x1b)
				v->state = VT_OSC_ESC;
			continue;
		case VT_OSC_ESC:
			v->state = c == '\\' ? VT_GROUND : VT_OSC;
			continue;
		case VT_SKIP1:
			v->state = VT_GROUND;
			continue;
		default:
			break;
		}
		if (v->utf_need) {
			if ((c & 0xC0) == 0x80) {
				v->utf[v->utf_have++] = c;
				if (v->utf_have == v->utf_need) {
					char ch[CELL_BYTES];
					memcpy(ch, v->utf, (size_t)v->utf_have);
					ch[v->utf_have] = '\0';
					v->utf_need = v->utf_have = 0;
					vt_print(v, ch);
				}
				continue;
			}
			v->utf_need = v->utf_have = 0; /* a broken sequence: drop it */
		}
		if (c >= 0xC0 && c < 0xF8) {
			v->utf[0] = c;
			v->utf_have = 1;
			v->utf_need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
			continue;
		}
		switch (c) {
		case 0x1b: v->state = VT_ESC; break;
		case '\r': v->x = 0; v->wrap_pending = false; break;
		case '\n': case '\v': case '\f': vt_linefeed(v); v->wrap_pending = false; break;
		case '\b': if (v->x > 0) v->x--; v->wrap_pending = false; break;
		case '\t': v->x = (v->x / 8 + 1) * 8; if (v->x >= v->cols) v->x = v->cols - 1; break;
		default:
			if (c >= 0x20 && c < 0x7f) {
				char ch[2] = {(char)c, '\0'};
				vt_print(v, ch);
			}
			break;
		}
	}
}

/* Row y as UTF-8 into buf; col[i] receives the column of byte i (col may be NULL). */
static void vt_row(const vt *v, int y, char *buf, size_t len, int *col)
{
	size_t n = 0;
	for (int x = 0; x < v->cols; x++) {
		const char *c = v->cells[(size_t)y * (size_t)v->cols + (size_t)x];
		size_t l = strlen(c);
		if (n + l + 1 > len)
			break;
		for (size_t k = 0; k < l && col; k++)
			col[n + k] = x;
		memcpy(buf + n, c, l);
		n += l;
	}
	buf[n] = '\0';
}

#define ROW_BYTES (TERM_COLS * CELL_BYTES + 1)

/* Finds needle on row y (or any row when y < 0); the column of its first character in *x and
 * the row in *out_y (both may be NULL). */
static bool vt_find(const vt *v, int y, const char *needle, int *out_y, int *x)
{
	char buf[ROW_BYTES];
	int col[ROW_BYTES];
	for (int r = y < 0 ? 0 : y; r < (y < 0 ? v->rows : y + 1); r++) {
		vt_row(v, r, buf, sizeof buf, col);
		const char *p = strstr(buf, needle);
		if (p) {
			if (x)
				*x = col[p - buf];
			if (out_y)
				*out_y = r;
			return true;
		}
	}
	return false;
}

static void vt_dump(const vt *v, FILE *out)
{
	char buf[ROW_BYTES];
	for (int y = 0; y < v->rows; y++) {
		vt_row(v, y, buf, sizeof buf, NULL);
		fprintf(out, "  | %s\n", buf);
	}
}

/* ---- the studio in a pseudo-terminal ------------------------------------------------------ */

typedef struct session {
	pid_t pid;
	int fd;
	vt screen;
	bool exited;
	int status;
} session;

/* Starts argv under a new pseudo-terminal of rows x cols with TERM=xterm-256color. */
static bool session_start(session *s, char *const argv[], int rows, int cols)
{
	memset(s, 0, sizeof *s);
	if (!vt_init(&s->screen, rows, cols))
		return false;
	struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
	s->pid = forkpty(&s->fd, NULL, NULL, &ws);
	if (s->pid < 0) {
		perror("bench_tui: forkpty");
		free(s->screen.cells);
		return false;
	}
	if (s->pid == 0) {
		setenv("TERM", "xterm-256color", 1);
		execv(argv[0], argv);
		fprintf(stderr, "bench_tui: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
	return true;
}

/* Reads what the program wrote within timeout_s into the screen. true when anything came. */
static bool session_pump(session *s, double timeout_s)
{
	if (s->exited)
		return false;
	struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
	int ms = timeout_s <= 0 ? 0 : (int)(timeout_s * 1000 + 0.5);
	if (poll(&pfd, 1, ms) <= 0)
		return false;
	bool got = false;
	char buf[65536];
	for (;;) {
		ssize_t n = read(s->fd, buf, sizeof buf);
		if (n > 0) {
			vt_feed(&s->screen, buf, (size_t)n);
			got = true;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
			/* EIO: the program closed the terminal */
			if (waitpid(s->pid, &s->status, 0) == s->pid)
				s->exited = true;
		}
		break;
	}
	return got;
}

static void session_send(session *s, const char *bytes, size_t n)
{
	while (n > 0) {
		ssize_t w = write(s->fd, bytes, n);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w <= 0)
			return;
		bytes += w;
		n -= (size_t)w;
	}
}

/* Waits up to timeout_s for needle on row y (any row when y < 0). */
static bool session_wait(session *s, int y, const char *needle, double timeout_s)
{
	double end = now_s() + timeout_s;
	for (;;) {
		if (vt_find(&s->screen, y, needle, NULL, NULL))
			return true;
		double left = end - now_s();
		if (left <= 0 || s->exited)
			return false;
		session_pump(s, left < 0.05 ? left : 0.05);
	}
}

/* Waits up to timeout_s until needle is no longer on row y (any row when y < 0). */
static bool session_wait_gone(session *s, int y, const char *needle, double timeout_s)
{
	double end = now_s() + timeout_s;
	for (;;) {
		if (!vt_find(&s->screen, y, needle, NULL, NULL))
			return true;
		double left = end - now_s();
		if (left <= 0 || s->exited)
			return false;
		session_pump(s, left < 0.05 ? left : 0.05);
	}
}

/* Reads output until the program has been quiet for quiet_s (at most max_s). */
static void session_settle(session *s, double quiet_s, double max_s)
{
	double end = now_s() + max_s;
	while (now_s() < end && session_pump(s, quiet_s))
		;
}

/* Ends the program: q, then SIGTERM, then SIGKILL, each given a moment. */
static void session_stop(session *s)
{
	if (!s->pid)
		return;
	if (!s->exited) {
		session_send(s, "q", 1);
		for (int i = 0; i < 50 && !s->exited; i++) {
			session_pump(s, 0.1);
			if (!s->exited && waitpid(s->pid, &s->status, WNOHANG) == s->pid)
				s->exited = true;
		}
	}
	if (!s->exited) {
		kill(s->pid, SIGTERM);
		for (int i = 0; i < 30 && !s->exited; i++) {
			if (waitpid(s->pid, &s->status, WNOHANG) == s->pid)
				s->exited = true;
			else
				usleep(100000);
		}
	}
	if (!s->exited) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, &s->status, 0);
		s->exited = true;
	}
	close(s->fd);
	free(s->screen.cells);
	s->pid = 0;
}

/* An xterm SGR mouse event at (y, x), 0-based: button 0 left, 64/65 wheel up/down. */
static void session_mouse(session *s, int button, int y, int x, bool press_release, int times)
{
	char buf[256];
	size_t n = 0;
	for (int i = 0; i < times; i++) {
		n += (size_t)snprintf(buf + n, sizeof buf - n, "\x1b[<%d;%d;%dM", button, x + 1, y + 1);
		if (press_release)
			n += (size_t)snprintf(buf + n, sizeof buf - n, "\x1b[<%d;%d;%dm", button, x + 1,
					      y + 1);
	}
	session_send(s, buf, n);
}

/* ---- helpers: running the CLI, a scratch data home --------------------------------------- */

/* Runs argv, its stdout into out (len bytes, may be NULL), stderr to ours. Returns the exit
 * status, or -1. */
static int run(char *const argv[], char *out, size_t len)
{
	int pfd[2];
	if (pipe(pfd) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		execv(argv[0], argv);
		fprintf(stderr, "bench_tui: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	size_t n = 0;
	char sink[4096];
	for (;;) {
		char *dst = out && n + 1 < len ? out + n : sink;
		size_t room = out && n + 1 < len ? len - 1 - n : sizeof sink;
		ssize_t r = read(pfd[0], dst, room);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (dst != sink)
			n += (size_t)r;
	}
	if (out && len)
		out[n] = '\0';
	close(pfd[0]);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void rm_rf(const char *path)
{
	char *argv[] = {"/bin/rm", "-rf", (char *)path, NULL};
	run(argv, NULL, 0);
}

/* the integer after "key": in a JSON text, or -1 */
static long long json_int(const char *json, const char *key)
{
	char k[64];
	snprintf(k, sizeof k, "\"%s\"", key);
	const char *p = strstr(json, k);
	if (!p || !(p = strchr(p + strlen(k), ':')))
		return -1;
	return strtoll(p + 1, NULL, 10);
}

/* a "key": "value" string of a JSON text into buf ("" when absent) */
static void json_str(const char *json, const char *key, char *buf, size_t len)
{
	char k[64];
	snprintf(k, sizeof k, "\"%s\"", key);
	buf[0] = '\0';
	const char *p = strstr(json, k);
	if (!p || !(p = strchr(p + strlen(k), ':')) || !(p = strchr(p, '"')))
		return;
	const char *e = strchr(p + 1, '"');
	if (e)
		snprintf(buf, len, "%.*s", (int)(e - p - 1), p + 1);
}

/* ---- the benchmark -------------------------------------------------------------------------- */

typedef struct bench_opts {
	char bin[PATH_MAX];
	char fixture_tool[PATH_MAX];
	const char *model;         /* a model file to import, or NULL: a generated fixture */
	int samples;
} bench_opts;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double percentile(const double *sorted, int n, double q)
{
	if (n <= 0)
		return NAN;
	double pos = q * (n - 1);
	int i = (int)pos;
	double f = pos - i;
	return i + 1 < n ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
}

typedef struct tab_target {
	char key;
	const char *marker;        /* drawn on row 1 by that screen only */
} tab_target;

/* Measures n key-to-screen samples alternating between two tabs. ms receives the latencies
 * of the samples that arrived; *lost counts those that did not within KEY_TIMEOUT_S, *busy
 * those taken while the tab bar said a job runs. Returns the number of latencies. */
static int measure(session *s, const tab_target t[2], int n, double *ms, int *lost, int *busy,
		   unsigned *rng)
{
	int got = 0;
	*lost = *busy = 0;
	int cur = vt_find(&s->screen, 1, t[0].marker, NULL, NULL) ? 0 : 1;
	for (int i = 0; i < n && !s->exited; i++) {
		/* a random pause, so that keys land at every phase of the studio's 150 ms tick */
		*rng = *rng * 1103515245u + 12345u;
		session_settle(s, 0.01 + (*rng >> 16) % 140 / 1000.0, 0.5);
		int next = 1 - cur;
		if (vt_find(&s->screen, 0, "job running", NULL, NULL) ||
		    vt_find(&s->screen, 0, "jobs running", NULL, NULL))
			(*busy)++;
		session_send(s, &t[next].key, 1);
		double t0 = now_s();
		bool ok = false;
		while (now_s() - t0 < KEY_TIMEOUT_S && !s->exited) {
			if (vt_find(&s->screen, 1, t[next].marker, NULL, NULL)) {
				ok = true;
				break;
			}
			session_pump(s, 0.05);
		}
		if (ok)
			ms[got++] = (now_s() - t0) * 1000.0;
		else
			(*lost)++;
		cur = next;
	}
	return got;
}

static void print_row(const char *cond, double *ms, int n, int lost, int busy, int total)
{
	qsort(ms, (size_t)n, sizeof *ms, cmp_double);
	char extra[96] = "";
	if (lost)
		snprintf(extra, sizeof extra, "  (%d lost after %.0f s)", lost, KEY_TIMEOUT_S);
	if (busy >= 0)
		snprintf(extra + strlen(extra), sizeof extra - strlen(extra),
			 "  (job running for %d of %d)", busy, total);
	if (n == 0) {
		printf("%-22s %7d %9s %8s %8s   median < 50 ms%s\n", cond, 0, "—", "—", "—", extra);
		return;
	}
	double med = percentile(ms, n, 0.5);
	printf("%-22s %7d %9.1f %8.1f %8.1f   median < 50 ms: %s%s\n", cond, n, med,
	       percentile(ms, n, 0.9), ms[n - 1], med < 50 ? "met" : "NOT met", extra);
}

static void loadavg(char *buf, size_t len)
{
	snprintf(buf, len, "unknown");
	FILE *f = fopen("/proc/loadavg", "r");
	if (!f)
		return;
	double a, b, c;
	if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
		snprintf(buf, len, "%.2f %.2f %.2f", a, b, c);
	fclose(f);
}

/* A text for calibration: numbered lines of varied words, enough for a long job. */
static bool write_text(const char *path, int lines)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	static const char *const words[] = {"river", "stone", "lantern", "harbor", "meadow",
					    "copper", "signal", "orchard", "winter", "needle"};
	for (int i = 1; i <= lines; i++)
		fprintf(f, "line %d of the text, with %s%d and %s%d beside %s.\n", i, words[i % 10],
			(i * 7) % 13, words[(i * 3) % 10], i % 17, words[(i * 11) % 10]);
	return fclose(f) == 0;
}

/* The job's state (32 bytes) and error ("" when none) from 'optstudio jobs show --json';
 * state "" when that fails. *pid (may be NULL) receives the worker's pid or -1. */
static void job_state(const char *bin, long long job, char *state, char *error, size_t len,
		      long long *pid)
{
	char id[32], out[8192];
	snprintf(id, sizeof id, "%lld", job);
	char *show[] = {(char *)bin, "jobs", "show", id, "--json", NULL};
	state[0] = error[0] = '\0';
	if (pid)
		*pid = -1;
	if (run(show, out, sizeof out) != 0)
		return;
	json_str(out, "state", state, 32);
	json_str(out, "error", error, len);
	if (pid)
		*pid = json_int(out, "pid");
}

static int bench(const bench_opts *o)
{
	char dir[] = "/tmp/optstudio-bench-tui.XXXXXX";
	if (!mkdtemp(dir)) {
		perror("bench_tui: mkdtemp");
		return 1;
	}
	char home[PATH_MAX], model[PATH_MAX], calib[PATH_MAX], out[8192];
	snprintf(home, sizeof home, "%s/home", dir);
	snprintf(calib, sizeof calib, "%s/calib.txt", dir);
	setenv("OPTSTUDIO_HOME", home, 1);
	setenv("OPTSTUDIO_WORKER_IDLE_MS", "1500", 1);
	int status = 1;
	session s = {0};
	long long job = -1;
	const char *what;
	if (o->model) {
		snprintf(model, sizeof model, "%s", o->model);
		what = o->model;
	} else {
		/* a fixture large enough that calibration keeps both cores busy */
		snprintf(model, sizeof model, "%s/fixture.gguf", dir);
		char *fx[] = {(char *)o->fixture_tool, model, "--seed", "29", "--layers", "6", "--dim", "512",
			      "--heads", "8", "--kv-heads", "4", "--ffn", "1536", NULL};
		if (run(fx, NULL, 0) != 0) {
			fprintf(stderr, "bench_tui: %s failed\n", o->fixture_tool);
			goto done;
		}
		what = "a generated fixture (6 layers, dim 512)";
	}
	char *imp[] = {(char *)o->bin, "hub", "import", model, "--name", "bench-model", NULL};
	if (run(imp, NULL, 0) != 0 || !write_text(calib, 60000)) {
		fprintf(stderr, "bench_tui: cannot prepare the data home %s\n", home);
		goto done;
	}
	char *studio[] = {(char *)o->bin, NULL};
	if (!session_start(&s, studio, TERM_ROWS, TERM_COLS))
		goto done;
	int jobs_x = -1;
	if (!session_wait(&s, 0, " 1 Hub ", WAIT_S) || !session_wait(&s, 1, "─ Models ", WAIT_S) ||
	    !vt_find(&s.screen, 0, " Jobs ", NULL, &jobs_x)) {
		fprintf(stderr, "bench_tui: the studio did not show its Hub; the screen:\n");
		vt_dump(&s.screen, stderr);
		goto done;
	}
	char jobs_key = ' ';
	{
		char row[ROW_BYTES];
		vt_row(&s.screen, 0, row, sizeof row, NULL);
		const char *p = strstr(row, " Jobs ");
		jobs_key = p && p - row >= 1 ? p[-1] : '3';
	}
	const tab_target tabs[2] = {{'1', "─ Models "}, {jobs_key, "─ Jobs "}};
	unsigned rng = 12345;
	int n = o->samples, lost = 0, busy = 0;
	double *idle_ms = calloc((size_t)n, sizeof *idle_ms), *busy_ms = calloc((size_t)n, sizeof *busy_ms);
	if (!idle_ms || !busy_ms) {
		free(idle_ms);
		free(busy_ms);
		goto done;
	}
	int n_idle = measure(&s, tabs, n, idle_ms, &lost, &busy, &rng);
	int lost_idle = lost;

	/* a real job: SmoothQuant calibration over many samples keeps the worker busy */
	char *opt[] = {(char *)o->bin, "optimize", "bench-model", "--quantize", "int8-smoothquant",
		       "--calib", calib, "--samples", "8000", "--seq-len", "64", "--json", NULL};
	if (run(opt, out, sizeof out) != 0 || (job = json_int(out, "id")) < 0) {
		fprintf(stderr, "bench_tui: cannot queue the job: %s\n", out);
		free(idle_ms);
		free(busy_ms);
		goto done;
	}
	session_send(&s, "1", 1);
	if (!session_wait(&s, 0, "1 job running", 60)) {
		fprintf(stderr, "bench_tui: job %lld did not start within 60 s; the screen:\n", job);
		vt_dump(&s.screen, stderr);
		free(idle_ms);
		free(busy_ms);
		goto done;
	}
	int n_busy = measure(&s, tabs, n, busy_ms, &lost, &busy, &rng);
	char la[64];
	loadavg(la, sizeof la);
	char state[32], error[256];
	job_state(o->bin, job, state, error, sizeof error, NULL);

	printf("key-to-screen latency: optstudio in a pty (%dx%d, TERM=xterm-256color), keys 1 and %c\n"
	       "alternate Hub and Jobs; time from write() of the key to the new screen's box title on\n"
	       "the emulated terminal. Model: %s; job: int8-smoothquant calibration.\n",
	       TERM_COLS, TERM_ROWS, jobs_key, what);
	printf("%-22s %7s %9s %8s %8s   %s\n", "condition", "samples", "median ms", "p90 ms", "max ms",
	       "goal");
	print_row("no job", idle_ms, n_idle, lost_idle, -1, n);
	print_row("job running", busy_ms, n_busy, lost, busy, n);
	printf("load average after: %s (%ld cores online)\n", la, sysconf(_SC_NPROCESSORS_ONLN));
	if (strcmp(state, "running"))
		printf("note: job %lld was %s at the end, not running%s%s\n", job, state[0] ? state : "unknown",
		       error[0] ? ": " : "", error);
	free(idle_ms);
	free(busy_ms);
	status = 0;
done:
	session_stop(&s);
	if (job >= 0) {
		/* stop the job, then wait for its worker to leave before removing its home */
		char id[32], st[32], why[256];
		snprintf(id, sizeof id, "%lld", job);
		char *stop[] = {(char *)o->bin, "jobs", "stop", id, NULL};
		run(stop, NULL, 0);
		long long pid = -1;
		for (int i = 0; i < 300; i++) {
			long long p = -1;
			job_state(o->bin, job, st, why, sizeof why, &p);
			if (p > 0)
				pid = p;
			if (strcmp(st, "running") && strcmp(st, "stopping") && strcmp(st, "queued"))
				break;
			usleep(100000);
		}
		for (int i = 0; pid > 0 && i < 100 && kill((pid_t)pid, 0) == 0; i++)
			usleep(100000);
	}
	rm_rf(dir);
	return status;
}

/* ---- mouse checks ------------------------------------------------------------------------- */

typedef struct checks {
	int passed, failed;
	session *s;
} checks;

static void check(checks *c, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(checks *c, bool ok, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf(ok ? "ok   " : "FAIL ");
	vprintf(fmt, ap);
	putchar('\n');
	va_end(ap);
	if (ok) {
		c->passed++;
	} else {
		c->failed++;
		if (c->s)
			vt_dump(&c->s->screen, stdout);
	}
	fflush(stdout);
}

/* the Hub's model names, in the order of the table's rows, and the row of the first */
static int hub_rows(const vt *v, char names[][128], int cap, int *y0)
{
	int hy = -1, n = 0;
	if (!vt_find(v, -1, "NAME", &hy, NULL))
		return 0;
	*y0 = hy + 1;
	char buf[ROW_BYTES];
	for (int y = hy + 1; y < v->rows && n < cap; y++) {
		vt_row(v, y, buf, sizeof buf, NULL);
		const char *p = buf;
		if (strncmp(p, "│", strlen("│")) != 0)
			break;
		p += strlen("│");
		while (*p == ' ')
			p++;
		size_t l = strcspn(p, " ");
		if (!l || !strncmp(p, "│", strlen("│")))
			break; /* an empty row of the box */
		snprintf(names[n++], 128, "%.*s", (int)l, p);
	}
	return n;
}

/* clicks the text's first column on row y (any row when y < 0) once it shows; false when it
 * does not within WAIT_S */
static bool click_text(session *s, int y, const char *text, int times)
{
	int ty = 0, tx = 0;
	if (!session_wait(s, y, text, WAIT_S))
		return false;
	session_settle(s, 0.05, 1.0); /* the whole frame, not the first rows of a redraw */
	if (!vt_find(&s->screen, y, text, &ty, &tx))
		return false;
	session_mouse(s, 0, ty, tx, true, times);
	return true;
}

static int test_mouse(const bench_opts *o)
{
	checks c = {0};
	session s;
	char *studio[] = {(char *)o->bin, NULL};
	if (!session_start(&s, studio, TERM_ROWS, TERM_COLS)) {
		check(&c, false, "the studio starts in a pty");
		goto done;
	}
	c.s = &s;
	check(&c, session_wait(&s, 0, " 1 Hub ", WAIT_S) && session_wait(&s, 1, "─ Models ", WAIT_S) &&
		  session_wait(&s, -1, "NAME", WAIT_S) && session_wait(&s, TERM_ROWS - 1, "q quit", WAIT_S),
	      "the studio starts in a pty (xterm-256color) on the Hub");
	session_settle(&s, 0.2, 2);
	char names[8][128];
	int y0 = 0, n = hub_rows(&s.screen, names, 8, &y0);
	check(&c, n >= 2, "the Hub lists at least two models (%d)", n);
	if (n < 2)
		goto done;
	char title[200];

	/* tabs */
	check(&c, click_text(&s, 0, " Jobs ", 1) && session_wait(&s, 1, "─ Jobs ", WAIT_S),
	      "a click on the Jobs tab opens Jobs");
	check(&c, click_text(&s, 0, " Hub ", 1) && session_wait(&s, 1, "─ Models ", WAIT_S),
	      "a click on the Hub tab opens the Hub");

	/* rows: the summary box under the table is titled with the selected model */
	snprintf(title, sizeof title, "╭─ %s ", names[1]);
	session_mouse(&s, 0, y0 + 1, 6, true, 1);
	check(&c, session_wait(&s, -1, title, WAIT_S), "a click on the second row selects %s", names[1]);
	snprintf(title, sizeof title, "╭─ %s ", names[0]);
	session_mouse(&s, 0, y0, 6, true, 1);
	check(&c, session_wait(&s, -1, title, WAIT_S), "a click on the first row selects %s", names[0]);
	session_mouse(&s, 65, y0, 6, false, 1);
	snprintf(title, sizeof title, "╭─ %s ", names[1]);
	check(&c, session_wait(&s, -1, title, WAIT_S), "the wheel down moves the selection to %s",
	      names[1]);
	session_mouse(&s, 64, y0, 6, false, 1);
	snprintf(title, sizeof title, "╭─ %s ", names[0]);
	check(&c, session_wait(&s, -1, title, WAIT_S), "the wheel up moves it back to %s", names[0]);
	snprintf(title, sizeof title, "Model card: %s", names[1]);
	session_mouse(&s, 0, y0 + 1, 6, true, 2);
	check(&c, session_wait(&s, -1, title, WAIT_S), "a double click on a row opens its card");
	session_send(&s, "\x1b", 1);
	check(&c, session_wait(&s, 1, "─ Models ", WAIT_S) && session_wait(&s, y0 - 1, "NAME", WAIT_S),
	      "Esc closes the card");
	check(&c, click_text(&s, y0 - 1, "ARCH", 1) && session_wait(&s, y0 - 1, "ARCH▲", WAIT_S),
	      "a click on a column header sorts by it");

	/* footer keys */
	check(&c, click_text(&s, TERM_ROWS - 1, "? help", 1) && session_wait(&s, -1, "Help: keys", WAIT_S),
	      "a click on the footer's '? help' opens the help");
	session_send(&s, "\x1b", 1);
	check(&c, session_wait_gone(&s, -1, "Help: keys", WAIT_S), "Esc closes the help");
	check(&c, click_text(&s, TERM_ROWS - 1, "/ filter", 1) &&
		  session_wait(&s, TERM_ROWS - 2, "Esc clear", WAIT_S),
	      "a click on the footer's '/ filter' opens the filter prompt");
	session_send(&s, "\x1b", 1);
	check(&c, session_wait_gone(&s, TERM_ROWS - 2, "Esc clear", WAIT_S), "Esc closes the prompt");

	/* Settings: a click on a theme row previews it */
	check(&c, click_text(&s, 0, " Settings ", 1) && session_wait(&s, -1, "Preview: ", WAIT_S),
	      "a click on the Settings tab opens Settings");
	int ly = 0, lx = 0;
	if (session_wait(&s, -1, " light ", WAIT_S) && vt_find(&s.screen, -1, " light ", &ly, &lx)) {
		session_mouse(&s, 0, ly, lx + 2, true, 1);
		check(&c, session_wait(&s, -1, "Preview: light", WAIT_S),
		      "a click on a theme row previews that theme");
		check(&c, click_text(&s, TERM_ROWS - 1, "Esc revert", 1) &&
			  session_wait(&s, -1, "back to theme", WAIT_S),
		      "a click on the footer's 'Esc revert' reverts it");
	} else {
		check(&c, false, "the Settings screen lists the light theme");
	}

	/* the footer's q quits */
	check(&c, click_text(&s, TERM_ROWS - 1, "q quit", 1), "the footer shows 'q quit'");
	for (int i = 0; i < 200 && !s.exited; i++)
		session_pump(&s, 0.1);
	c.s = NULL;
	check(&c, s.exited && WIFEXITED(s.status) && WEXITSTATUS(s.status) == 0,
	      "a click on 'q quit' ends the studio with status 0");
done:
	session_stop(&s);
	printf("%d passed, %d failed\n", c.passed, c.failed);
	return c.failed ? 1 : 0;
}

/* ---- main -------------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_tui [--bin OPTSTUDIO] [--model FILE.gguf] [--samples N]\n"
		"       bench_tui --test-mouse [--bin OPTSTUDIO]\n"
		"\n"
		"Drives the real studio in a pseudo-terminal (%dx%d, TERM=xterm-256color).\n"
		"By default measures the key-to-screen latency (ms) of tab switches with no job and\n"
		"while a job runs, in a scratch data home with FILE.gguf (default: a generated\n"
		"fixture), and prints a table. --test-mouse runs mouse checks on the data home of\n"
		"$OPTSTUDIO_HOME (with at least two models) and ends with 'N passed, N failed'.\n"
		"OPTSTUDIO defaults to ../optstudio next to this program.\n",
		TERM_COLS, TERM_ROWS);
}

int main(int argc, char **argv)
{
	setlocale(LC_CTYPE, "C.UTF-8");
	signal(SIGPIPE, SIG_IGN);
	bench_opts o = {.samples = 40};
	bool mouse = false;
	char self[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	self[len > 0 ? len : 0] = '\0';
	const char *dir = len > 0 ? dirname(self) : ".";
	snprintf(o.bin, sizeof o.bin, "%s/../optstudio", dir);
	snprintf(o.fixture_tool, sizeof o.fixture_tool, "%s/make_fixture", dir);
	static const struct option opts[] = {
		{"bin", required_argument, NULL, 'b'},
		{"model", required_argument, NULL, 'm'},
		{"samples", required_argument, NULL, 'n'},
		{"test-mouse", no_argument, NULL, 'M'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'b': snprintf(o.bin, sizeof o.bin, "%s", optarg); break;
		case 'm': o.model = optarg; break;
		case 'n':
			o.samples = atoi(optarg);
			if (o.samples < 1 || o.samples > MAX_SAMPLES) {
				fprintf(stderr, "bench_tui: --samples wants 1..%d, got '%s'\n", MAX_SAMPLES, optarg);
				return 2;
			}
			break;
		case 'M': mouse = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "bench_tui: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	char real[PATH_MAX];
	if (realpath(o.bin, real))
		snprintf(o.bin, sizeof o.bin, "%s", real);
	if (access(o.bin, X_OK) != 0) {
		fprintf(stderr, "bench_tui: %s is not an executable; give --bin\n", o.bin);
		return 2;
	}
	if (o.model && access(o.model, R_OK) != 0) {
		fprintf(stderr, "bench_tui: cannot read the model '%s'\n", o.model);
		return 2;
	}
	return mouse ? test_mouse(&o) : bench(&o);
}
