package assoc

// NextDue returns when Expire next has work, if it ever has.
func (m *Machine[T]) NextDue() (int64, bool) {
	if len(m.heap) == 0 {
		return 0, false
	}
	return m.heap[0].due, true
}

// Expire ends every association whose deadline has passed.
func (m *Machine[T]) Expire(now int64) {
	for len(m.heap) > 0 && m.heap[0].due <= now {
		a := m.heap[0]
		at, why, ok := m.deadline(a)
		switch {
		case !ok:
			m.unschedule(a)
		case at > now:
			a.due = at
			m.down(0)
		default:
			m.end(a, why, false)
		}
	}
}

// deadline is when a's current state runs out, and why.
func (m *Machine[T]) deadline(a *Assoc[T]) (int64, EndReason, bool) {
	switch a.state {
	case Unverified:
		return a.opened + int64(m.cfg.UnverifiedTimeout), EndUnverifiedTimeout, true
	case Handshaking:
		return a.opened + int64(m.cfg.HandshakeTimeout), EndHandshakeTimeout, true
	case Established:
		return a.last + int64(m.cfg.IdleTimeout), EndIdle, m.cfg.IdleTimeout > 0
	case Closing:
		return a.since + int64(m.cfg.CloseLinger), EndLinger, true
	}
	return 0, 0, false
}

func (m *Machine[T]) pushBack(head, tail **Assoc[T], a *Assoc[T]) {
	a.prev, a.next = *tail, nil
	if *tail != nil {
		(*tail).next = a
	} else {
		*head = a
	}
	*tail = a
}

func (m *Machine[T]) unlink(head, tail **Assoc[T], a *Assoc[T]) {
	if a.prev != nil {
		a.prev.next = a.next
	} else {
		*head = a.next
	}
	if a.next != nil {
		a.next.prev = a.prev
	} else {
		*tail = a.prev
	}
	a.prev, a.next = nil, nil
}

// The timer heap holds every association with a deadline, keyed by due.
// Deadlines that move later (a handshake verified, an idle association
// that saw traffic) are found lazily when the old due comes round, so a
// datagram never touches the heap.

func (m *Machine[T]) schedule(a *Assoc[T], due int64) {
	if a.heapIdx >= 0 {
		if due < a.due {
			a.due = due
			m.up(a.heapIdx)
		}
		return
	}
	a.due = due
	a.heapIdx = len(m.heap)
	m.heap = append(m.heap, a)
	m.up(a.heapIdx)
}

func (m *Machine[T]) unschedule(a *Assoc[T]) {
	i := a.heapIdx
	if i < 0 {
		return
	}
	last := len(m.heap) - 1
	m.swap(i, last)
	m.heap[last] = nil
	m.heap = m.heap[:last]
	a.heapIdx = -1
	if i < last {
		m.down(i)
		m.up(i)
	}
}

func (m *Machine[T]) swap(i, j int) {
	m.heap[i], m.heap[j] = m.heap[j], m.heap[i]
	m.heap[i].heapIdx = i
	m.heap[j].heapIdx = j
}

func (m *Machine[T]) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if m.heap[parent].due <= m.heap[i].due {
			return
		}
		m.swap(i, parent)
		i = parent
	}
}

func (m *Machine[T]) down(i int) {
	n := len(m.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		small := l
		if r := l + 1; r < n && m.heap[r].due < m.heap[l].due {
			small = r
		}
		if m.heap[i].due <= m.heap[small].due {
			return
		}
		m.swap(i, small)
		i = small
	}
}
