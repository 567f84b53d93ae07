package dev.rtml.streams;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.avro.Schema;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.ProcessorSupplier;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of one rtml feature: per transaction, the customer's number of
 * transactions and their mean amount over (t - 7 days, t], the current one included, with t the
 * transaction's own event time (its tx_datetime field, not when it arrived).
 *
 * <p>Why the Processor API and not the DSL's windowed aggregation: a DSL window emits one
 * result per window, not per record. Hopping and tumbling windows have fixed boundaries, and
 * sliding windows are closed at both ends ([t - 7 d, t]) and emit updates for every window a
 * record falls in, so none of them gives "this transaction and the 7 days before it" as one
 * value per transaction without joining the aggregates back to the stream. Here a processor
 * keeps each customer's recent transactions in a key-value state store (backed by a changelog
 * topic, so a restarted instance restores it) and computes the window for each record exactly
 * as rtml's Python definition does.
 *
 * <p>Usage: {@code CustomerWindowPeer app.properties}. The file holds Kafka Streams' settings
 * (application.id, bootstrap.servers, state.dir, ...) and this app's own, prefixed rtml.:
 * rtml.input, rtml.output, rtml.schema (the .avsc file), rtml.schema.id, rtml.grace.ms.
 */
public final class CustomerWindowPeer {
  static final String STORE = "customer-7d";
  static final long WINDOW_MS = 7L * 86_400_000L;

  private CustomerWindowPeer() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 1) {
      System.err.println("usage: CustomerWindowPeer app.properties");
      System.exit(2);
    }
    Properties all = new Properties();
    try (InputStream in = new FileInputStream(args[0])) {
      all.load(in);
    }
    Properties streams = new Properties();
    for (String name : all.stringPropertyNames()) {
      if (!name.startsWith("rtml.")) {
        streams.setProperty(name, all.getProperty(name));
      }
    }
    Schema schema = schema(all.getProperty("rtml.schema"));
    int schemaId = Integer.parseInt(all.getProperty("rtml.schema.id", "-1"));
    long graceMs = Long.parseLong(all.getProperty("rtml.grace.ms", "60000"));
    Topology topology = topology(
        all.getProperty("rtml.input", "transactions"),
        all.getProperty("rtml.output", "features.streams-peer"),
        schema,
        schemaId,
        graceMs);
    System.out.println(topology.describe());

    KafkaStreams app = new KafkaStreams(topology, streams);
    CountDownLatch stopped = new CountDownLatch(1);
    AtomicReference<KafkaStreams.State> last = new AtomicReference<>();
    app.setStateListener((now, before) -> {
      System.out.println("state " + before + " -> " + now);
      last.set(now);
      if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
        stopped.countDown();
      }
    });
    // A record the processor cannot handle is a bug here (bad input is rejected, not thrown):
    // stop the whole client rather than skip it or retry it forever.
    app.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    // SIGTERM (how rtml stops it): close cleanly, committing offsets and flushing the store.
    // Kafka Streams' members do not leave their group on close (a restart within the session
    // timeout then skips a rebalance). leaveGroup removes a static member (rtml gives the
    // main consumer a group.instance.id), so the group is empty, and can be deleted or taken
    // over by another instance, at once instead of after the session timeout.
    KafkaStreams.CloseOptions leave =
        new KafkaStreams.CloseOptions().timeout(Duration.ofSeconds(30)).leaveGroup(true);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      app.close(leave);
      stopped.countDown();
    }));
    app.start();
    stopped.await();
    if (last.get() == KafkaStreams.State.ERROR) {
      app.close(Duration.ofSeconds(30));
      System.exit(1);
    }
  }

  /** The schema from a file, or from the class path when no file is given. */
  static Schema schema(String path) throws IOException {
    if (path != null && !path.isEmpty()) {
      return new Schema.Parser().parse(new File(path));
    }
    try (InputStream in = CustomerWindowPeer.class.getResourceAsStream("/transaction.avsc")) {
      if (in == null) {
        throw new IOException("no rtml.schema given and no transaction.avsc on the class path");
      }
      return new Schema.Parser().parse(in);
    }
  }

  /** source (transactions) -> customer-window processor with its store -> sink (output). */
  static Topology topology(String input, String output, Schema schema, int schemaId, long grace) {
    StoreBuilder<KeyValueStore<Long, byte[]>> store = Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(STORE), Serdes.Long(), Serdes.ByteArray())
        // Writes to the changelog once per customer per commit, not once per record, as
        // Quix's state does between its commits.
        .withCachingEnabled();
    ProcessorSupplier<byte[], byte[], byte[], byte[]> supplier = new ProcessorSupplier<>() {
      @Override
      public Processor<byte[], byte[], byte[], byte[]> get() {
        return new WindowProcessor(new TransactionReader(schema, schemaId), grace);
      }

      @Override
      public Set<StoreBuilder<?>> stores() {
        return Set.of(store);
      }
    };
    Topology topology = new Topology();
    topology.addSource("transactions", new ByteArrayDeserializer(), new ByteArrayDeserializer(),
        input);
    topology.addProcessor("customer-window", supplier, "transactions");
    topology.addSink("features", output, new ByteArraySerializer(), new ByteArraySerializer(),
        "customer-window");
    return topology;
  }

  /** Per record: update the customer's window in the store, forward the features as JSON. */
  static final class WindowProcessor implements Processor<byte[], byte[], byte[], byte[]> {
    private final TransactionReader reader;
    private final long graceMs;
    private ProcessorContext<byte[], byte[]> context;
    private KeyValueStore<Long, byte[]> store;
    private long processed;
    private long rejected;
    private long late;

    WindowProcessor(TransactionReader reader, long graceMs) {
      this.reader = reader;
      this.graceMs = graceMs;
    }

    @Override
    public void init(ProcessorContext<byte[], byte[]> context) {
      this.context = context;
      this.store = context.getStateStore(STORE);
      // A punctuation: called on a schedule rather than per record. Wall-clock time here, to
      // report progress; stream-time punctuations fire as event time advances instead.
      context.schedule(Duration.ofSeconds(5), PunctuationType.WALL_CLOCK_TIME, now -> report());
    }

    @Override
    public void process(Record<byte[], byte[]> record) {
      TransactionReader.Transaction tx;
      try {
        tx = reader.read(record.value());
      } catch (TransactionReader.Rejected e) {
        if (rejected++ < 5) {
          System.out.println("rejected a record: " + e.getMessage());
        }
        return;
      }
      CustomerWindow window = CustomerWindow.decode(store.get(tx.customerId()));
      // As the Quix app: a transaction older than the customer's latest by more than the
      // grace period is late and gets no features (Quix sends it to transactions.late).
      if (window.latest() != Long.MIN_VALUE && tx.time() < window.latest() - graceMs) {
        late++;
        return;
      }
      window.add(tx.time(), tx.amount());
      // Keep what a transaction up to `grace` out of order may still need.
      window.dropUpTo(tx.time() - WINDOW_MS - graceMs);
      store.put(tx.customerId(), window.encode());
      String json = "{\"transaction_id\":" + tx.id()
          + ",\"customer_id\":" + tx.customerId()
          + ",\"tx_datetime\":" + tx.time()
          + ",\"customer_nb_tx_7d\":" + window.count(tx.time(), WINDOW_MS)
          // Double.toString prints the shortest decimal that reads back as the same double.
          + ",\"customer_avg_amount_7d\":" + window.mean(tx.time(), WINDOW_MS)
          + "}";
      context.forward(record.withValue(json.getBytes(StandardCharsets.UTF_8))
          .withTimestamp(tx.time()));
      processed++;
    }

    @Override
    public void close() {
      report();
    }

    private void report() {
      // One processor per task (a task per input partition), so one line each.
      System.out.println("task " + context.taskId() + ": processed " + processed + " rejected "
          + rejected + " late " + late);
    }
  }
}
