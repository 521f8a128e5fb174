package healthcheck

import (
	"time"

	"github.com/xlb-project/xlb/internal/clock/clocktest"
)

type fakeClock = clocktest.Fake

func newFakeClock() *fakeClock { return clocktest.New(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) }
