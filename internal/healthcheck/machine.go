package healthcheck

import (
	"time"

	"github.com/xlb-project/xlb/internal/risefall"
	"github.com/xlb-project/xlb/internal/service"
)

// machine is the state of one check of one backend, following keepalived
// 2.2's checkers: whether the check is up, how many failures in a row it has
// absorbed (keepalived's retry_it), and for HTTP_GET/SSL_GET which URL is
// probed next. It does no I/O and reads no clock: observe takes the outcome
// of one probe and says how long to wait before the next one, so every
// timing rule can be tested by feeding it outcomes.
type machine struct {
	kind             service.CheckKind
	retry            int
	delayLoop        time.Duration
	delayBeforeRetry time.Duration
	urls             int

	up bool
	// hasRun is keepalived's has_run: false until the check has reached a
	// verdict. Before that a failure is reported without waiting for
	// retries, so that a backend that is dead when xlb starts is taken out
	// at its first probe.
	hasRun bool
	fails  int
	// rise holds a check that its checker brought up down until the
	// checker has said "up" rise times in a row; any failure starts the
	// count again. Its verdict is up's, kept in step by observe. Fall is
	// 1: the checker's retries already decide when the check goes down.
	rise risefall.Counter
	// url is the index of the URL the next HTTP probe fetches.
	url int
	// failedURL is set while a down HTTP check waits for the URL that
	// failed to answer again; only then are all URLs walked anew.
	failedURL bool
}

// step is what a machine does after one probe.
type step struct {
	// delay is how long to wait before the next probe, counted from the
	// end of this one, or from its start when fromStart is set (MISC_CHECK
	// schedules from the moment the script was launched).
	delay     time.Duration
	fromStart bool
	// changed reports that the check went up or down.
	changed bool
}

// newMachine returns the machine of a check that starts up (keepalived's
// default without alpha), or down with Alpha, until its first success.
// startup marks the checks of the first configuration: keepalived presets
// their retry counter to its limit (validate_check_config: "for non alpha
// mode, one failure is enough initially"), so their first failure counts
// at once.
func newMachine(c service.Check, startup bool) machine {
	m := machine{
		kind:             c.Kind,
		retry:            c.Retry,
		delayLoop:        c.DelayLoop,
		delayBeforeRetry: c.DelayBeforeRetry,
		urls:             len(c.URLs),
		rise:             risefall.New(c.Rise, 1, !c.Alpha),
		up:               !c.Alpha,
	}
	if startup && !c.Alpha {
		m.fails = m.retry
	}
	return m
}

// resumed returns the machine of a check that replaces another one on a
// configuration reload: it keeps the verdict already reached.
func resumed(c service.Check, up bool) machine {
	m := newMachine(c, false)
	m.up = up
	m.rise = risefall.New(c.Rise, 1, up)
	m.hasRun = true
	return m
}

// observe records the outcome of one probe.
func (m *machine) observe(ok bool) step {
	was := m.up
	var s step
	switch m.kind {
	case service.CheckHTTP, service.CheckSSL:
		s = m.observeHTTP(ok)
	case service.CheckMisc:
		s = m.observeMisc(ok)
	default:
		s = m.observeTCP(ok)
	}
	// A configured rise holds a down check down until its checker has
	// said "up" rise times in a row (for HTTP, rise rounds over every
	// URL); any failed probe of a down check starts the count again. A
	// failure the checker absorbs with a retry leaves an up check up.
	switch {
	case ok && !was && m.up:
		m.up, _ = m.rise.Add(true)
	case !ok && !m.up:
		m.rise.Add(false)
	}
	s.changed = m.up != was
	return s
}

// observeTCP follows check_tcp.c's tcp_epilog: a failure is retried after
// delay_before_retry until retry retries have failed too; then the check is
// down and the next probe waits delay_loop. A down check keeps cycling
// through its retries, and one success brings it up.
func (m *machine) observeTCP(ok bool) step {
	m.hasRun = true
	if ok || m.fails >= m.retry {
		m.fails = 0
		m.up = ok
		return step{delay: m.delayLoop}
	}
	m.fails++
	return step{delay: m.delayBeforeRetry}
}

// observeMisc follows check_misc.c's misc_check_child_thread: like TCP,
// except that a down check does not retry (it simply runs again after
// delay_loop) and that the next run is timed from the start of this one.
func (m *machine) observeMisc(ok bool) step {
	switch {
	case ok:
		m.up = true
		m.fails = 0
	case m.up || !m.hasRun:
		if m.fails < m.retry {
			m.fails++
		} else {
			m.fails = 0
			m.up = false
		}
	}
	m.hasRun = true
	d := m.delayLoop
	if m.fails > 0 {
		d = m.delayBeforeRetry
	}
	return step{delay: d, fromStart: true}
}

// observeHTTP follows check_http.c's epilog and timeout_epilog. Each probe
// fetches one URL; after a success the next URL follows delay_loop later,
// so a round over n URLs takes n delay_loops. A failing URL is fetched again
// after delay_before_retry; after retry retries the check is down and that
// URL is polled every max(delay_loop, delay_before_retry) until it answers.
// Then every URL is walked again, and the check comes up when all have
// passed in a row.
func (m *machine) observeHTTP(ok bool) step {
	if ok {
		m.url++
		m.fails = 0
		switch {
		case m.failedURL:
			m.failedURL = false
			m.url = 0
		case m.url >= m.urls:
			m.up = true
			m.hasRun = true
			m.url = 0
		}
		if !m.hasRun {
			// No retries until the first round has completed.
			m.fails = m.retry
		}
		return step{delay: m.delayLoop}
	}
	if m.up || !m.hasRun {
		m.hasRun = true
		m.fails++
		if m.fails > m.retry {
			m.up = false
			m.failedURL = true
		}
	}
	if m.failedURL {
		return step{delay: max(m.delayLoop, m.delayBeforeRetry)}
	}
	return step{delay: m.delayBeforeRetry}
}

// probeCheck narrows c to what the next probe tests: for HTTP and SSL
// checks, the one URL whose turn it is.
func (m machine) probeCheck(c service.Check) service.Check {
	if (c.Kind == service.CheckHTTP || c.Kind == service.CheckSSL) && m.url < len(c.URLs) {
		c.URLs = c.URLs[m.url : m.url+1]
	}
	return c
}
