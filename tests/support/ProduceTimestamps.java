// Produces records with given timestamps through Apache Kafka's Java client, which writes any
// timestamp >= 0 as it is (librdkafka, and so confluent-kafka, reads 0 as "now").
// Run as a single source file (Java 11+), with the stack's kafka-clients jar on the class path
// (tests/support/java_producer.py):
//   java -cp '<libs>/*' ProduceTimestamps.java BOOTSTRAP TOPIC PARTITION:TIMESTAMP...
// The i-th record goes to its PARTITION with key "k<i>", value "v<i>" and its TIMESTAMP. Prints
// "partition offset timestamp" per record once every record is acknowledged (acks=all) and exits 0;
// 1 on any failure. Every wait is bounded.
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class ProduceTimestamps {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: ProduceTimestamps BOOTSTRAP TOPIC PARTITION:TIMESTAMP...");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        String topic = args[1];
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 2; i < args.length; i++) {
                int n = i - 2;
                String[] spec = args[i].split(":", 2);
                sent.add(producer.send(new ProducerRecord<>(
                        topic, Integer.parseInt(spec[0]), Long.parseLong(spec[1]),
                        ("k" + n).getBytes(), ("v" + n).getBytes())));
            }
            for (Future<RecordMetadata> future : sent) {
                RecordMetadata meta = future.get(40, TimeUnit.SECONDS);
                System.out.println(meta.partition() + " " + meta.offset() + " " + meta.timestamp());
            }
            producer.flush();
        } catch (Exception e) {
            System.err.println("ProduceTimestamps: " + e);
            System.exit(1);
        }
    }
}
