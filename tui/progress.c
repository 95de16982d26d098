/* progress.c: the stderr progress bar of long CLI work (see progress.h): a redrawn line on a
 * terminal, an occasional plain line elsewhere. */
#include "progress.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

struct progress {
	FILE *out;
	char label[48];
	char unit[16];
	size_t total;         /* units; 0 = unknown */
	size_t done;
	bool tty;             /* redraw in place */
	bool quiet;           /* draw nothing */
	bool drew;            /* something is on the terminal line / a plain line was printed */
	size_t drawn_done;    /* done at the last draw */
	double t_start;       /* s, CLOCK_MONOTONIC */
	double t_last_draw;   /* s */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void progress_format_duration(double seconds, char *buf, size_t len)
{
	if (!(seconds >= 0) || seconds > 1e8) {
		snprintf(buf, len, "?");
		return;
	}
	long s = (long)(seconds + 0.5);
	if (s >= 3600)
		snprintf(buf, len, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
	else if (s >= 60)
		snprintf(buf, len, "%ld:%02ld", s / 60, s % 60);
	else
		snprintf(buf, len, "%lds", s);
}

progress *progress_new(const char *label, const char *unit, size_t total, bool quiet, FILE *out)
{
	progress *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->out = out ? out : stderr;
	snprintf(p->label, sizeof p->label, "%s", label ? label : "");
	snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "");
	p->total = total;
	p->quiet = quiet;
	p->tty = isatty(fileno(p->out)) == 1;
	p->t_start = now_s();
	p->t_last_draw = p->t_start;
	return p;
}

/* Terminal width in columns, 80 when unknown. */
static int term_width(FILE *out)
{
	struct winsize ws;
	if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/* The text after the bar: "1234/5000 tok  312.4 tok/s  ETA 0:12". */
static void format_status(const progress *p, double t, char *buf, size_t len)
{
	double elapsed = t - p->t_start;
	double rate = elapsed > 0 ? (double)p->done / elapsed : 0;
	char eta[32] = "";
	if (p->total && p->done && rate > 0) {
		char d[24];
		progress_format_duration((double)(p->total - p->done) / rate, d, sizeof d);
		snprintf(eta, sizeof eta, "  ETA %s", d);
	}
	if (p->total)
		snprintf(buf, len, "%zu/%zu %s  %.1f %s/s%s", p->done, p->total, p->unit, rate,
			 p->unit, eta);
	else
		snprintf(buf, len, "%zu %s  %.1f %s/s", p->done, p->unit, rate, p->unit);
}

static void draw(progress *p, double t)
{
	char status[160];
	format_status(p, t, status, sizeof status);
	if (!p->tty) {
		fprintf(p->out, "%s: %s\n", p->label, status);
		fflush(p->out);
		p->drew = true;
		p->drawn_done = p->done;
		return;
	}
	int width = term_width(p->out) - 1; /* never touch the last column: no wrap */
	int fixed = (int)strlen(p->label) + 1 + 2 + 1 + (int)strlen(status);
	int bar = width - fixed;
	if (bar > 40)
		bar = 40;
	fprintf(p->out, "\r%s ", p->label);
	if (bar >= 5 && p->total) {
		int fill = (int)((double)bar * (double)p->done / (double)p->total);
		fputc('[', p->out);
		for (int i = 0; i < bar; i++)
			fputc(i < fill ? '=' : i == fill ? '>' : ' ', p->out);
		fputs("] ", p->out);
	}
	fprintf(p->out, "%s\033[K", status);
	fflush(p->out);
	p->drew = true;
	p->drawn_done = p->done;
}

void progress_update(progress *p, size_t done)
{
	if (!p)
		return;
	if (p->total && done > p->total)
		done = p->total;
	p->done = done;
	if (p->quiet)
		return;
	double t = now_s();
	double every = p->tty ? 0.1 : PROGRESS_PLAIN_EVERY_S;
	if (t - p->t_last_draw < every && !(p->tty && !p->drew))
		return;
	p->t_last_draw = t;
	draw(p, t);
}

void progress_finish(progress *p)
{
	if (!p)
		return;
	if (!p->quiet && p->drew) {
		if (p->tty) {
			fputs("\r\033[K", p->out);
			fflush(p->out);
		} else if (p->drawn_done != p->done) {
			draw(p, now_s());
		}
	}
	free(p);
}
