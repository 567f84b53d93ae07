package dev.rtml.streams;

import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * One customer's recent transactions (event time, amount), sorted by time: the value held in
 * the state store, and the window arithmetic of rtml's customer windows.
 *
 * <p>The window at time t is (t - length, t], the current transaction included, and its sum is
 * taken oldest first, as rtml's Python definition sums it, so both get the same double.
 */
final class CustomerWindow {
  private long[] times;
  private double[] amounts;
  private int size;

  private CustomerWindow(long[] times, double[] amounts, int size) {
    this.times = times;
    this.amounts = amounts;
    this.size = size;
  }

  /** The window stored as {@code bytes} (pairs of long time, double amount), or an empty one. */
  static CustomerWindow decode(byte[] bytes) {
    if (bytes == null || bytes.length == 0) {
      return new CustomerWindow(new long[8], new double[8], 0);
    }
    ByteBuffer in = ByteBuffer.wrap(bytes);
    int n = bytes.length / 16;
    long[] t = new long[n + 8];
    double[] a = new double[n + 8];
    for (int i = 0; i < n; i++) {
      t[i] = in.getLong();
      a[i] = in.getDouble();
    }
    return new CustomerWindow(t, a, n);
  }

  /** The bytes the state store (and its changelog topic) holds. */
  byte[] encode() {
    ByteBuffer out = ByteBuffer.allocate(size * 16);
    for (int i = 0; i < size; i++) {
      out.putLong(times[i]);
      out.putDouble(amounts[i]);
    }
    return out.array();
  }

  /** The latest event time held, or Long.MIN_VALUE for an empty window. */
  long latest() {
    return size == 0 ? Long.MIN_VALUE : times[size - 1];
  }

  /** Add a transaction after every one with the same or an earlier time (Python's insort). */
  void add(long time, double amount) {
    int at = upperBound(time);
    if (size == times.length) {
      times = Arrays.copyOf(times, size * 2 + 8);
      amounts = Arrays.copyOf(amounts, size * 2 + 8);
    }
    System.arraycopy(times, at, times, at + 1, size - at);
    System.arraycopy(amounts, at, amounts, at + 1, size - at);
    times[at] = time;
    amounts[at] = amount;
    size++;
  }

  /** Forget every transaction at or before {@code cut}: no later window reaches back that far. */
  void dropUpTo(long cut) {
    int n = upperBound(cut);
    if (n == 0) {
      return;
    }
    System.arraycopy(times, n, times, 0, size - n);
    System.arraycopy(amounts, n, amounts, 0, size - n);
    size -= n;
  }

  /** The number of transactions in (now - length, now]. */
  int count(long now, long length) {
    return upperBound(now) - upperBound(now - length);
  }

  /** The mean amount over (now - length, now], summed oldest first; 0 for an empty window. */
  double mean(long now, long length) {
    int start = upperBound(now - length);
    int end = upperBound(now);
    if (end == start) {
      return 0.0;
    }
    double total = 0.0;
    for (int i = start; i < end; i++) {
      total += amounts[i];
    }
    return total / (end - start);
  }

  /** The first index whose time is above {@code time} (Python's bisect_right). */
  private int upperBound(long time) {
    int lo = 0;
    int hi = size;
    while (lo < hi) {
      int mid = (lo + hi) >>> 1;
      if (times[mid] <= time) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }
}
