namespace Mesh.Client.Authorization.RateLimit;

/// <summary>
/// One token bucket per caller key (Envoy's wildcard descriptor), at most <see cref="Capacity"/> of them: beyond that
/// the least recently used bucket is dropped (Envoy's <c>max_dynamic_descriptors</c> LRU). A caller that mints new
/// identities therefore costs bounded memory; a dropped caller comes back with a full bucket, which the total limit
/// still bounds. Lookups of a known key allocate nothing.
/// </summary>
internal sealed class PeerBucketCache(uint maxTokens, uint tokensPerFill, TimeSpan fillInterval, int capacity, TimeProvider time)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Node> _nodes = new(StringComparer.Ordinal);
    private Node? _head;
    private Node? _tail;

    public int Capacity { get; } = capacity > 0 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity));

    public uint MaxTokens => maxTokens;

    /// <summary>Gets the number of buckets held (at most <see cref="Capacity"/>).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _nodes.Count;
            }
        }
    }

    public TokenBucket Get(string key)
    {
        lock (_gate)
        {
            if (_nodes.TryGetValue(key, out var node))
            {
                MoveToFront(node);
                return node.Bucket;
            }

            node = new Node(key, new TokenBucket(maxTokens, tokensPerFill, fillInterval, time));
            _nodes.Add(key, node);
            AddFront(node);
            if (_nodes.Count > Capacity)
            {
                var evicted = _tail!;
                Unlink(evicted);
                _nodes.Remove(evicted.Key);
            }

            return node.Bucket;
        }
    }

    private void MoveToFront(Node node)
    {
        if (ReferenceEquals(node, _head))
        {
            return;
        }

        Unlink(node);
        AddFront(node);
    }

    private void AddFront(Node node)
    {
        node.Previous = null;
        node.Next = _head;
        if (_head is not null)
        {
            _head.Previous = node;
        }

        _head = node;
        _tail ??= node;
    }

    private void Unlink(Node node)
    {
        if (node.Previous is not null)
        {
            node.Previous.Next = node.Next;
        }
        else
        {
            _head = node.Next;
        }

        if (node.Next is not null)
        {
            node.Next.Previous = node.Previous;
        }
        else
        {
            _tail = node.Previous;
        }

        node.Previous = node.Next = null;
    }

    private sealed class Node(string key, TokenBucket bucket)
    {
        public string Key { get; } = key;

        public TokenBucket Bucket { get; } = bucket;

        public Node? Previous { get; set; }

        public Node? Next { get; set; }
    }
}
